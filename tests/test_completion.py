"""Shell completion: the scripts of ``tjob completion`` and the ``tjob __complete`` they call.

The bash script is driven for real (a bash that sources it, sets ``COMP_*`` as readline would
and calls the function); zsh and fish scripts are syntax-checked when those shells are here.
Job ids come from a real tjobs (root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli import TJOB, Server, server  # noqa: F401 (fixture)
from support.net import free_port
from support.timeouts import PROCESS_HANG as HANG
from support.tjobs import BIN

from tjob.cli.tjob.args import COMMANDS, PARSERS


def env(tmp: Path, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TJOB_")}
    e["XDG_CONFIG_HOME"] = str(tmp / "xdg")
    e["PATH"] = f"{BIN}:{e.get('PATH', '/usr/bin:/bin')}"
    e.update(extra)
    return e


def complete(tmp: Path, *words: str, cwd: Path | None = None, **extra: str) -> list[str]:
    """``tjob __complete words WORDS...`` -> the candidate words (descriptions dropped)."""
    proc = subprocess.run(
        [*TJOB, "__complete", "words", *words],
        cwd=cwd or tmp,
        env=env(tmp, **extra),
        capture_output=True,
        timeout=HANG,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stderr == b""
    return [line.split("\t")[0] for line in proc.stdout.decode().splitlines()]


def script(shell: str) -> str:
    proc = subprocess.run(
        [*TJOB, "completion", shell], capture_output=True, timeout=HANG, check=True
    )
    return proc.stdout.decode()


def test_bash_script_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "tjob.bash"
    path.write_text(script("bash"))
    subprocess.run(["bash", "-n", str(path)], check=True, timeout=HANG)


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_scripts_are_valid(tmp_path: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    path = tmp_path / f"tjob.{shell}"
    path.write_text(script(shell))
    subprocess.run([shell, "-n", str(path)], check=True, timeout=HANG)


def test_commands_options_and_values(tmp_path: Path) -> None:
    assert complete(tmp_path, "") == list(COMMANDS)
    assert complete(tmp_path, "co") == ["context", "completion"]
    assert complete(tmp_path, "--c") == ["--ca", "--cert", "--context"]
    assert complete(tmp_path, "ps", "--j") == ["--json"]
    assert complete(tmp_path, "--host", "h:1", "logs", "--no") == ["--no-follow"]
    assert complete(tmp_path, "completion", "") == ["bash", "zsh", "fish"]
    assert complete(tmp_path, "context", "") == ["add", "use", "ls", "rm", "show"]
    assert complete(tmp_path, "ps", "--ca", "") == [":files"]
    assert complete(tmp_path, "run", "--cpu", "5", "") == [":commands"]
    assert complete(tmp_path, "run", "ls", "-") == [":files"]  # the job's own argument
    assert complete(tmp_path, "bogus", "") == []


def test_every_command_and_flag_of_the_parsers_completes(tmp_path: Path) -> None:
    """Generated from the parsers: nothing to edit when a flag or a command is added."""
    for name, make in PARSERS.items():
        parser = make()
        flags = {f for a in parser._actions for f in a.option_strings if f.startswith("--")}
        hidden = {f for a in parser._actions if a.help == "==SUPPRESS==" for f in a.option_strings}
        assert set(complete(tmp_path, name, "--")) == flags - hidden, name


def test_context_names(tmp_path: Path) -> None:
    e = env(tmp_path)
    for name in ("prod", "dev"):
        subprocess.run(
            [*TJOB, "context", "add", name, "--host", "h:1"], env=e, check=True, timeout=HANG
        )
    assert complete(tmp_path, "context", "use", "") == ["default", "dev", "prod"]
    assert complete(tmp_path, "context", "rm", "dev", "") == ["dev", "prod"]
    assert complete(tmp_path, "--context", "p") == ["prod"]
    assert complete(tmp_path, "ps", "--context=d") == ["--context=default", "--context=dev"]


def test_an_unreachable_server_completes_nothing_quietly(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    assert complete(tmp_path, "--host", host, "logs", "") == []
    assert complete(tmp_path, "stop", "") == []  # no certificates either


def bash_complete(tmp: Path, line: str) -> list[str]:
    """What the bash script puts in COMPREPLY for ``line`` (cursor at its end)."""
    path = tmp / "tjob.bash"
    path.write_text(script("bash"))
    driver = f"""
source {path}
COMP_LINE=$1 COMP_POINT=${{#1}}
# readline's words: split at blanks and at COMP_WORDBREAKS (: and = among them)
read -ra COMP_WORDS <<<"${{1//[:=]/ : }}"
[[ $1 == *" " || $1 == *[:=] ]] && COMP_WORDS+=("")
COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
_tjob
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    return words_printed(tmp, ["bash", "-c", driver, "bash", line])


def words_printed(tmp: Path, argv: list[str]) -> list[str]:
    """The non-empty lines ``argv`` prints, run in ``tmp`` with its settings (it must succeed)."""
    proc = subprocess.run(
        argv, env=env(tmp), cwd=tmp, capture_output=True, timeout=HANG, check=True, text=True
    )
    return [w for w in proc.stdout.splitlines() if w]


def test_the_bash_script_completes(tmp_path: Path) -> None:
    subprocess.run(
        [*TJOB, "context", "add", "dev", "--host", "h:1"],
        env=env(tmp_path),
        check=True,
        timeout=HANG,
    )
    assert bash_complete(tmp_path, "tjob con") == ["context"]
    assert bash_complete(tmp_path, "tjob ps --q") == ["--quiet"]
    # The address's ':' is a word break for readline, not for the command line.
    assert bash_complete(tmp_path, "tjob --host localhost:8080 p") == ["ps"]
    assert bash_complete(tmp_path, "tjob --context=d") == ["default", "dev"]
    assert "tjobs" in bash_complete(tmp_path, "tjob run tjob")  # the shell's command names


def shell_complete(tmp: Path, shell: str, driver: str, *args: str) -> list[str]:
    """Run ``driver`` in ``shell`` with the script of ``tjob completion SHELL`` as its $1."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    path = tmp / f"tjob.{shell}"
    path.write_text(script(shell))
    # bash and zsh take $0 after -c's command, fish does not
    zero = [shell] if shell != "fish" else []
    return words_printed(tmp, [shell, "-c", driver, *zero, str(path), *args])


# zsh's completion system needs a terminal; its three functions the script calls are stood in
# for (each prints what it was given), the rest of the script runs as in a shell.
ZSH_DRIVER = """
_describe() { print -rl -- "${(@P)4}" }
_files() { print -r -- ":files${1:+ $1}" }
_command_names() { print -r -- ":commands" }
compdef() { : }
source $1
shift
words=("$@") CURRENT=$#
_tjob
"""


def test_the_zsh_script_completes(tmp_path: Path) -> None:
    def zsh(*words: str) -> list[str]:
        return shell_complete(tmp_path, "zsh", ZSH_DRIVER, "tjob", *words)

    assert zsh("con") == ["context:server contexts: addresses with their certificates"]
    assert zsh("--host", "a:1", "ps", "--q") == ["--quiet:only print ids"]
    assert zsh("--ca", "") == [":files"]
    assert zsh("run", "") == [":commands"]


def test_the_fish_script_completes(tmp_path: Path) -> None:
    def fish(line: str) -> list[str]:
        driver = 'source $argv[1]; complete -C "$argv[2]"'
        return shell_complete(tmp_path, "fish", driver, line)

    assert fish("tjob con") == ["context\tserver contexts: addresses with their certificates"]
    assert fish("tjob completion ") == ["bash", "fish", "zsh"]
    assert "tjobs\tcommand" in fish("tjob run tjob")


@pytest.mark.root
def test_job_ids_from_the_server(server: Server) -> None:  # noqa: F811
    running = server.run("sleep", "60")
    ended = server.run("true")
    server.ok("wait", ended)
    home = server.home
    e = {"TJOB_HOST": server.host}
    assert {running, ended} <= set(complete(home, "logs", "", cwd=home, **e))
    stop = complete(home, "stop", "", cwd=home, **e)
    assert running in stop and ended not in stop
    rm = complete(home, "rm", "", cwd=home, **e)
    assert ended in rm and running not in rm
    assert complete(home, "ps", running[:3], cwd=home, **e) == [running]
    # Another client's jobs are not offered.
    bob = ["--cert", ".tjob/other.crt", "--key", ".tjob/other.key"]
    assert running not in complete(home, *bob, "logs", "", cwd=home, **e)
    server.ok("stop", "-t", "0", running)
