"""The engine's job index: exact ids, unique prefixes, ambiguous and unknown ones."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

from tjob.errors import AmbiguousJobId, JobNotFound
from tjob.index import JobIndex


@dataclass(frozen=True)
class J:
    id: str


def test_exact_prefix_ambiguous_and_unknown() -> None:
    index: JobIndex[J] = JobIndex()
    a, b, c = J("abc1"), J("abc2"), J("abd0")
    for j in (c, a, b):
        index.add(j)
    assert index.get("abc1") is a and index.get("abd") is c and index.get("abc2") is b
    with pytest.raises(AmbiguousJobId, match="matches 2 jobs"):
        index.get("abc")
    with pytest.raises(AmbiguousJobId, match="matches 3 jobs"):
        index.get("ab")
    for missing in ("", "abe", "b", "abc10"):
        with pytest.raises(JobNotFound):
            index.get(missing)
    index.discard("abc2")
    assert index.get("abc") is a and len(index) == 2
    index.discard("abc2")  # twice is fine
    assert sorted(j.id for j in index.all()) == ["abc1", "abd0"]


def test_prefix_lookup_agrees_with_a_scan_over_many_ids() -> None:
    index: JobIndex[J] = JobIndex()
    ids = [secrets.token_hex(16) for _ in range(5000)]
    for i in ids:
        index.add(J(i))
    for probe in [i[:n] for i in ids[:200] for n in (1, 3, 6, 32)]:
        matches = [i for i in ids if i.startswith(probe)]
        if len(matches) == 1:
            assert index.get(probe).id == matches[0]
        else:
            with pytest.raises(AmbiguousJobId, match=f"matches {len(matches)} jobs"):
                index.get(probe)
