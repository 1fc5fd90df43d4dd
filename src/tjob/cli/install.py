"""``tjobs install-service``: write the systemd unit (and a sample config if there is none).

The unit is package data (``tjob/data/tjobs.service``) with the installed ``tjobs`` and the
config path filled in. ``DelegateSubgroup=supervisor`` is added on systemd 254 and later, which
then starts tjobs in that leaf itself (older systemd does not know the key; tjobs then keeps its
jobs in a scope beside the unit, see ``tjob.cgroups.delegate`` and ``tjob.cgroups.scope``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

UNIT_NAME = "tjobs.service"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prefix",
        default="/",
        metavar="DIR",
        help="write under this root instead of / (packaging, tests)",
    )
    p.add_argument(
        "--unit-dir",
        default="/etc/systemd/system",
        metavar="DIR",
        help="where the unit goes (default %(default)s)",
    )
    p.add_argument(
        "--config",
        default="/etc/tjob/tjobs.toml",
        metavar="PATH",
        help="config file the unit starts tjobs with; a sample is written if absent "
        "(default %(default)s)",
    )
    p.add_argument(
        "--tjobs",
        metavar="PATH",
        help="the tjobs executable (default: the one installed beside this Python)",
    )
    p.add_argument(
        "--systemd-version",
        type=int,
        metavar="N",
        help="assume this systemd version (default: ask systemctl)",
    )


def run(args: argparse.Namespace) -> int:
    exe = args.tjobs or _installed_tjobs()
    version = args.systemd_version if args.systemd_version is not None else systemd_version()
    unit = render_unit(exe, args.config, version)
    root = Path(args.prefix)
    unit_path = _under(root, args.unit_dir) / UNIT_NAME
    config_path = _under(root, args.config)
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    unit_path.write_text(unit)
    print(f"wrote {unit_path}")
    if config_path.exists():
        print(f"kept {config_path}")
    else:
        config_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        config_path.write_text(resources.files("tjob").joinpath("data/tjobs.toml").read_text())
        print(f"wrote {config_path} (a sample: check its paths)")
    print("now: systemctl daemon-reload && systemctl enable --now tjobs")
    return 0


def render_unit(exe: str, config_path: str, systemd: int | None) -> str:
    text = resources.files("tjob").joinpath("data/tjobs.service").read_text()
    subgroup = (
        "DelegateSubgroup=supervisor"
        if systemd is not None and systemd >= 254
        else "# DelegateSubgroup=supervisor (systemd 254+; before it, jobs go to a scope)"
    )
    return (
        text.replace("@TJOBS@", exe)
        .replace("@CONFIG@", config_path)
        .replace("@DELEGATE_SUBGROUP@", subgroup)
    )


def systemd_version() -> int | None:
    """The running systemd's version from ``systemctl --version`` (None without systemd)."""
    try:
        out = subprocess.run(
            ["systemctl", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else None


def _installed_tjobs() -> str:
    beside = Path(sys.executable).parent / "tjobs"
    if os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which("tjobs")
    return str(Path(found).absolute()) if found else str(beside.absolute())


def _under(root: Path, path: str) -> Path:
    return root / Path(path).relative_to("/") if Path(path).is_absolute() else root / path
