"""The jobs' seccomp filter per architecture (issue 13, section 3: x86_64 and aarch64).

jail.profile_rules for each machine, from the shipped profile; and ``tjob-shim selftest
seccomp`` on this host: the filter compiled and loaded by the shim's own code, then each call
the issue names probed against a control run without it. The same selftest runs on aarch64
under qemu in ``make test-aarch64`` (tests/aarch64/run.sh)."""

from __future__ import annotations

import json
import platform
import re
import subprocess
from pathlib import Path

import pytest
from support.timeouts import HANG

from tjob import jail
from tjob.launcher import SHIM

ARM_ONLY = {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint"}
ARM_ONLY |= {"cacheflush", "set_tls"}
X86_ONLY = {"arch_prctl", "modify_ldt"}
# What the selftest must report on every arch (x86_64 adds the x32 ABI).
DENIED = ["unshare(CLONE_NEWUSER)", "clone(CLONE_NEWUSER)", "setns", "mount", "fsopen"]
DENIED += ["keyctl", "add_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup"]
DENIED += ["personality(READ_IMPLIES_EXEC)", "reboot", "adjtimex", "open_by_handle_at"]
ALLOWED = ["getpid", "fork and wait", "pthread_create", "execve (this program)"]
ALLOWED += ["personality(0xffffffff), a query", "open, read, pipe, write"]
# Through the machine's 32-bit ABI (i386 here, with int $0x80; AArch32 in the aarch64 lane).
COMPAT = ["getpid", "personality-query", "unshare-user", "mount", "keyctl", "personality-set"]
COMPAT += ["bpf", "perf_event_open", "io_uring_setup", "clone3"]


def arches(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines if line.startswith("arch ")]


def syscalls(lines: list[str]) -> set[str]:
    return {line.split()[3] for line in lines if line.startswith("rule ")}


# ------------------------------------------------------------------ the rules per machine


def test_aarch64_rules_are_for_aarch64_and_its_32_bit_compat_abi_only() -> None:
    lines = jail.profile_rules(jail.DEFAULT_PROFILE, "aarch64")
    assert lines[0] == "default errno 1"
    assert arches(lines) == ["aarch64", "arm"]
    names = syscalls(lines)
    assert names >= ARM_ONLY
    assert not names & X86_ONLY


def test_x86_64_rules_leave_the_x32_abi_out() -> None:
    """No "arch x32": libseccomp then makes the filter answer x32 calls with the bad-arch
    action (EPERM, jail_filter.c), which the selftest checks on x86_64."""
    lines = jail.profile_rules(jail.DEFAULT_PROFILE, "x86_64")
    assert arches(lines) == ["x86_64", "x86"]
    names = syscalls(lines)
    assert names >= X86_ONLY
    assert not names & ARM_ONLY


def test_both_machines_get_the_same_rules_but_for_their_own_syscalls() -> None:
    """The argument rules (clone and unshare without namespace flags, socket families,
    personality values) and the clone3 ENOSYS are the same lines on both."""
    arm = set(jail.profile_rules(jail.DEFAULT_PROFILE, "aarch64"))
    x86 = set(jail.profile_rules(jail.DEFAULT_PROFILE, "x86_64"))
    own = {line for line in arm ^ x86 if not line.startswith("arch ")}
    assert {line.split()[3] for line in own} == ARM_ONLY | X86_ONLY
    common = [line for line in arm & x86 if re.search(r" \d+:", line) or "clone3" in line]
    assert any(line.startswith("rule allow 1 clone 0:masked_eq:") for line in common)
    assert any(line.startswith("rule allow 1 unshare 0:masked_eq:") for line in common)
    assert "rule errno 38 clone3" in common
    assert sum(line.startswith("rule allow 1 personality ") for line in common) == 5


def test_a_profile_for_arm64_only_has_no_rule_on_x86_64(tmp_path: Path) -> None:
    """Go's arch names in includes (what Docker's profiles use) select the machine's rules."""
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []}],
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
            {"names": ["gettid"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["arm64"]}},
        ],
    }
    path = tmp_path / "arm64.json"
    path.write_text(json.dumps(profile))
    assert jail.profile_rules(path, "aarch64") == [
        "default errno 1",
        "arch aarch64",
        "rule allow 1 getpid",
    ]
    assert jail.profile_rules(path, "x86_64") == ["default errno 1", "rule allow 1 gettid"]


def test_a_machine_without_support_is_a_clear_error() -> None:
    with pytest.raises(jail.JailError, match=r"no profile support for this machine \(riscv64\)"):
        jail.profile_rules(jail.DEFAULT_PROFILE, "riscv64")


# ------------------------------------------------------------------ the filter on this host


def selftest(settings: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [str(SHIM), "selftest", "seccomp"],
        input=settings.encode(),
        capture_output=True,
        timeout=HANG,
        check=False,
    )
    assert not done.stderr, done.stderr
    return done.returncode, done.stdout.decode().splitlines()


def verdicts(lines: list[str]) -> dict[str, str]:
    """check -> PASS or FAIL, from "PASS what: answer (without the filter: ...)" lines."""
    out = {}
    for line in lines:
        m = re.match(r"(PASS|FAIL) (.+?): ", line)
        if m:
            out[m.group(2)] = m.group(1)
    return out


@pytest.mark.root
def test_the_shipped_filter_holds_on_this_machine() -> None:
    rc, lines = selftest("\n".join(jail.profile_rules(jail.DEFAULT_PROFILE)))
    assert rc == 0, "\n".join(lines)
    seen = verdicts(lines)
    wanted = DENIED + ALLOWED + ["clone3"]
    if platform.machine() == "x86_64":
        wanted.append("getpid through the x32 ABI")
        wanted += [f"{name} (i386 ABI)" for name in COMPAT]
    assert all(seen.get(what) == "PASS" for what in wanted), "\n".join(lines)
    assert any('"Seccomp:\t2"' in line and line.startswith("PASS") for line in lines)
    assert f"seccomp selftest on {platform.machine()}: {len(seen) + 2} checks" in lines[-1]


@pytest.mark.root
def test_the_selftest_fails_without_a_filter() -> None:
    """Unconfined (no lines), every denial and the status check fail: the checks can fail."""
    rc, lines = selftest("")
    assert rc == 1
    seen = verdicts(lines)
    assert all(seen[what] == "FAIL" for what in DENIED), "\n".join(lines)
    assert all(seen[what] == "PASS" for what in ALLOWED), "\n".join(lines)
    assert any(line.startswith('FAIL /proc/self/status has "Seccomp:') for line in lines)


@pytest.mark.root
def test_the_selftest_fails_when_the_filter_kills_an_ordinary_call() -> None:
    """A profile that kills getpid: that check, and no other allowed one, fails."""
    rules = jail.profile_rules(jail.DEFAULT_PROFILE)
    rules = [line for line in rules if line != "rule allow 1 getpid"]
    rc, lines = selftest("\n".join([*rules, "rule kill_process 1 getpid"]))
    assert rc == 1
    seen = verdicts(lines)
    assert seen["getpid"] == "FAIL"
    assert [what for what in ALLOWED if seen[what] != "PASS"] == ["getpid"]
    assert any(line.startswith("FAIL getpid: killed by signal 31") for line in lines)


@pytest.mark.root
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the i386 ABI of x86_64")
def test_the_selftest_fails_when_the_filter_leaves_the_32_bit_abi_out() -> None:
    """Without "arch x86" every i386 call gets the bad-arch EPERM: the allowed ones fail."""
    rules = [line for line in jail.profile_rules(jail.DEFAULT_PROFILE) if line != "arch x86"]
    rc, lines = selftest("\n".join(rules))
    assert rc == 1
    seen = verdicts(lines)
    assert seen["getpid (i386 ABI)"] == seen["personality-query (i386 ABI)"] == "FAIL"
    assert seen["unshare-user (i386 ABI)"] == "PASS"  # EPERM all the same
    assert all(seen[what] == "PASS" for what in DENIED + ALLOWED), "\n".join(lines)
