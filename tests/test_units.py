"""Sizes and durations as both CLIs read them (:mod:`tjob.units`), and ``tjobs``' flags."""

from __future__ import annotations

import pytest

from tjob.cli.tjobsargs import build_parser
from tjob.spec import DEFAULT_LIMITS, DEFAULT_OUTPUT_CAP
from tjob.units import MIB, parse_duration, parse_size, size_text


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("20", MIB, 20),  # a bare number is in the flag's unit
        ("20971520", 1, 20971520),
        ("512M", MIB, 512),
        ("1G", MIB, 1024),
        ("1g", 1, 1 << 30),
        ("1GB", 1, 1 << 30),
        ("1GiB", 1, 1 << 30),
        ("20 MiB", 1, 20 << 20),
        (" 4k ", 1, 4096),
        ("1T", 1, 1 << 40),
        ("1.5G", MIB, 1536),
        ("0.5K", 1, 512),
        ("1536K", MIB, 1),  # rounded down to whole MB
        ("4096B", 1, 4096),
    ],
)
def test_sizes(text: str, unit: int, value: int) -> None:
    assert parse_size(text, unit) == value


@pytest.mark.parametrize(
    ("text", "unit", "message"),
    [
        ("", 1, "is not a size"),
        ("lots", 1, "is not a size"),
        ("-1", 1, "is not a size"),
        ("1e6", 1, "is not a size"),
        ("20X", 1, "is not a size"),
        ("20iB", 1, "is not a size"),
        ("1.5", MIB, "is not a whole number"),
        ("0", 1, "is too small (at least 1B)"),
        ("512K", MIB, "is too small (at least 1M)"),
        ("16B", MIB, "is too small (at least 1M)"),
    ],
)
def test_bad_sizes(text: str, unit: int, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_size(text, unit)


def test_size_bounds() -> None:
    assert parse_size("4K", minimum=4096) == 4096
    with pytest.raises(ValueError, match=r"'4095' is too small \(at least 4K\)"):
        parse_size("4095", minimum=4096)
    assert parse_size(str(2**64 - 1)) == 2**64 - 1
    with pytest.raises(ValueError, match="too large"):
        parse_size(str(2**64))
    with pytest.raises(ValueError, match=r"too large \(at most 1G\)"):
        parse_size("2G", MIB, maximum=1024)
    assert [size_text(n) for n in (1, 4096, 1 << 30, 3 << 20, 1025)] == [
        "1B",
        "4K",
        "1G",
        "3M",
        "1025B",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10", 10.0),  # bare: seconds
        ("1.5", 1.5),
        (".5", 0.5),
        ("10s", 10.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 7 * 86400.0),
        ("2W", 14 * 86400.0),
        (" 90 s ", 90.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1", "1e3", "inf", "nan", "10y", "5mm"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_zero_duration_only_when_allowed() -> None:
    assert parse_duration("0", allow_zero=True) == 0.0
    assert parse_duration("0s", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="must be more than zero"):
        parse_duration("0")
    with pytest.raises(ValueError, match="too large"):
        parse_duration("9" * 400)


# --- tjobs reads the same spellings -------------------------------------------------------------


def test_tjobs_defaults_come_from_one_place() -> None:
    d = build_parser().parse_args([])
    assert (d.cpu, d.mem, d.pids, d.rbps, d.wbps) == (
        DEFAULT_LIMITS.cpu_percent,
        DEFAULT_LIMITS.memory_mb,
        DEFAULT_LIMITS.pids,
        DEFAULT_LIMITS.rbps,
        DEFAULT_LIMITS.wbps,
    )
    assert d.output_cap == DEFAULT_OUTPUT_CAP


def test_tjobs_units_everywhere() -> None:
    p = build_parser()
    a = p.parse_args(["--mem", "1G", "--wbps", "50M", "--rbps", "1048576", "--output-cap", "1G"])
    assert (a.mem, a.wbps, a.rbps, a.output_cap) == (1024, 50 << 20, 1 << 20, 1 << 30)
    b = p.parse_args(["-mem", "20", "-wbps", "20971520", "--retention", "12h"])
    assert (b.mem, b.wbps, b.retention) == (20, 20 << 20, 12 * 3600.0)
    assert p.parse_args(["--retention", "90"]).retention == 90.0


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--mem", "lots"], "--mem/-mem"),
        (["--mem", "0"], "--mem/-mem"),
        (["-wbps", "50Q"], "--wbps/-wbps"),
        (["--output-cap", "1K"], "--output-cap/-output-cap"),
        (["--retention", "0"], "--retention/-retention"),
        (["--retention", "forever"], "--retention/-retention"),
    ],
)
def test_tjobs_bad_values_name_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"tjobs: error: argument {flag}: '{argv[1]}' "), last
