"""``tjob completion bash|zsh|fish``: a completion script for the shell.

Each script only hands the line to ``tjob __complete`` (:mod:`.complete`) and shows the answer,
so commands and flags added later complete without a new script.
"""

from __future__ import annotations

import argparse
import sys

BASH = r"""# bash completion for tjob, from `tjob completion bash`. In ~/.bashrc:
#   source <(tjob completion bash)
_tjob() {
    local cur=${COMP_WORDS[COMP_CWORD]} out line
    COMPREPLY=()
    out=$(command tjob __complete line "${COMP_LINE:0:COMP_POINT}" "$cur" 2>/dev/null) || return 0
    case $out in
    :files) compopt -o default 2>/dev/null ;;
    :dirs) compopt -o dirnames 2>/dev/null ;;
    :commands) mapfile -t COMPREPLY < <(compgen -c -- "$cur") ;;
    *)
        while IFS= read -r line; do
            [[ -n $line ]] && COMPREPLY+=("${line%%$'\t'*}")
        done <<<"$out"
        ;;
    esac
}
complete -F _tjob tjob
"""

ZSH = r"""#compdef tjob
# zsh completion for tjob, from `tjob completion zsh`. Save it as _tjob in a directory of
# $fpath (before compinit runs), or after compinit: source <(tjob completion zsh)
_tjob() {
    local -a lines described
    local line word
    lines=("${(@f)$(command tjob __complete words "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    case ${lines[1]} in
    :files) _files; return ;;
    :dirs) _files -/; return ;;
    :commands) _command_names -e; return ;;
    esac
    for line in $lines; do
        [[ -z $line ]] && continue
        word=${line%%$'\t'*}
        if [[ $line == *$'\t'* ]]; then
            described+=("${word//:/\\:}:${line#*$'\t'}")
        else
            described+=("${word//:/\\:}")
        fi
    done
    (( $#described )) && _describe -t values tjob described
}
if [[ ${funcstack[1]} == _tjob ]]; then
    _tjob "$@"
else
    compdef _tjob tjob
fi
"""

FISH = r"""# fish completion for tjob, from `tjob completion fish`. Save it as
# ~/.config/fish/completions/tjob.fish
function __tjob_complete
    set -l words (commandline -opc)
    set -e words[1]
    set -l current (commandline -ct)
    set -l out (command tjob __complete words $words "$current" 2>/dev/null)
    switch "$out[1]"
        case :files
            __fish_complete_path "$current"
        case :dirs
            __fish_complete_directories "$current"
        case :commands
            __fish_complete_command
        case '*'
            printf '%s\n' $out
    end
end
complete -c tjob -f -a '(__tjob_complete)'
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}


def standalone(args: argparse.Namespace) -> int:
    sys.stdout.write(SCRIPTS[args.shell])
    return 0
