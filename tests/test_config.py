"""tjobs' config file: keys derived from the parser, checks, precedence, ``config`` commands."""

from __future__ import annotations

import argparse
import subprocess
import tomllib
from pathlib import Path

import pytest
from apiharness import HANG
from support.tjobs import TJOBS

from tjob.cli import config, service
from tjob.cli.tjobsargs import build_parser


def parser() -> argparse.ArgumentParser:
    p = build_parser()
    service.add_flags(p)
    return p


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tjobs.toml"
    path.write_text(text)
    return path


def tjobs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TJOBS, *args], check=False, capture_output=True, text=True, timeout=HANG
    )


def test_every_flag_has_a_key_but_help_and_config() -> None:
    p = parser()
    keys = config.keyed_actions(p)
    longs = {s[2:] for a in p._actions for s in a.option_strings if s.startswith("--")}
    assert set(keys) == longs - {"help", "config"}
    # A flag added later has its key with no change here.
    p.add_argument("--brand-new", type=int, default=1)
    assert config.keyed_actions(p)["brand-new"].dest == "brand_new"


def test_values_read_as_the_flags_would(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'max-jobs = 5\nadmin = ["ops", "sre"]\nretention = "12h"\noutput_cap = "512M"\n'
        'stop-on-exit = true\nhost = ":9000"\nlog-format = "json"\ncpu = 50\n',
    )
    values = config.load(parser(), path)
    assert values == {
        "max_jobs": 5,
        "admin": ["ops", "sre"],
        "retention": 12 * 3600.0,
        "output_cap": 512 << 20,
        "stop_on_exit": True,
        "host": ":9000",
        "log_format": "json",
        "cpu": 50,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1", "unknown key 'nope'"),
        ('max-jobs = "x"', "bad value for 'max-jobs': expected a number"),
        ('retention = "soon"', "bad value for 'retention': 'soon' is not a duration"),
        ("stop-on-exit = 1", "bad value for 'stop-on-exit': expected true or false"),
        ('admin = "ops"', "bad value for 'admin': expected an array"),
        ('log-format = "xml"', "bad value for 'log-format': \"xml\" is not one of plain, json"),
        ("cpu = [1]", "bad value for 'cpu': expected a string or a number"),
        ("max-jobs = 1\nmax_jobs = 2", "'max_jobs' repeats 'max-jobs'"),
        ("max-jobs = ", "not valid TOML"),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(config.ConfigError) as info:
        config.load(parser(), path)
    assert str(info.value).startswith(f"config {path}: ")
    assert message in str(info.value)


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'max-jobs = 5\nadmin = ["ops"]\ncpu = 50\n')
    argv = ["--config", str(path), "--max-jobs=7", "-admin", "me"]
    args, used = config.parse(parser(), argv)
    assert used == path
    # A repeatable flag replaces the file's array; what no flag names comes from the file.
    assert (args.max_jobs, args.admin, args.cpu, args.mem) == (7, ["me"], 50, 20)


def test_show_prints_toml_that_reads_back(tmp_path: Path) -> None:
    path = write(tmp_path, 'admin = ["o\\"ps"]\nretention = "2d"\n')
    proc = tjobs("config", "show", "--config", str(path), "--cpu", "30")
    assert proc.returncode == 0, proc.stderr
    shown = tomllib.loads(proc.stdout)
    assert shown["admin"] == ['o"ps'] and shown["retention"] == 2 * 86400.0
    assert shown["cpu"] == 30 and "mnt" not in shown  # unset: a comment
    # What show prints is itself a valid config with the same effect.
    again = write(tmp_path, proc.stdout)
    args, _ = config.parse(parser(), ["--config", str(again)])
    assert args.admin == ['o"ps'] and args.cpu == 30 and args.retention == 2 * 86400.0


def test_check_command(tmp_path: Path) -> None:
    good = write(tmp_path, "pids = 100\n")
    proc = tjobs("config", "check", "--config", str(good))
    assert proc.returncode == 0 and proc.stdout == f"config {good}: ok\n"
    bad = tmp_path / "bad.toml"
    bad.write_text("pids = -x\n")
    proc = tjobs("config", "check", "--config", str(bad))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"tjobs: config {bad}: not valid TOML")


def test_server_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "max-jobz = 3\n")
    proc = tjobs("--config", str(path))
    assert proc.returncode == 1
    assert proc.stderr == f"tjobs: config {path}: unknown key 'max-jobz'\n"


def test_changes_lists_differing_keys() -> None:
    assert config.changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b", "c"]
