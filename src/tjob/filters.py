"""Job filters as ``ps --filter`` spells them: ``state=running``, ``name=nightly*``,
``label=team=ml`` (or ``label=team``: has the label), ``node=NAME`` (a gateway's jobs). Pure:
the server applies them before paging (a listing never ships what it filters out), the CLI
parses them before any call.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import InvalidSpec
from .naming import MAX_LABEL_KEY, MAX_LABEL_VALUE, MAX_NAME
from .status import JobState, JobStatus

MAX_FILTERS = 32
KINDS = ("state", "name", "label", "node")
# Every state this version has (queued, starting...); one it does not have is refused.
STATES = tuple(s.value for s in JobState)


@dataclass(frozen=True)
class Filter:
    kind: str  # one of KINDS
    key: str  # state, glob, or label key
    value: str | None = None  # label value (None: any)

    def matches(self, st: JobStatus) -> bool:
        if self.kind == "state":
            return st.state.value == self.key
        if self.kind == "name":
            return bool(st.name) and fnmatch.fnmatchcase(st.name, self.key)
        if self.kind == "node":
            return st.node == self.key
        if self.key not in st.labels:
            return False
        return self.value is None or st.labels[self.key] == self.value


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def parse(text: str) -> Filter:
    """One filter; InvalidSpec naming what is wrong with it."""
    kind, sep, rest = text.partition("=")
    if not sep or kind not in KINDS:
        raise InvalidSpec(
            f"filter {_shown(text)} is not state=STATE, name=GLOB, label=KEY[=VALUE] or node=NAME"
        )
    if kind == "state":
        if rest not in STATES:
            raise InvalidSpec(f"filter {_shown(text)}: state must be one of {', '.join(STATES)}")
        return Filter(kind, rest)
    if kind == "name":
        if not rest or len(rest) > MAX_NAME:
            raise InvalidSpec(f"filter {_shown(text)}: the name pattern must be 1 to {MAX_NAME}")
        return Filter(kind, rest)
    if kind == "node":
        if not rest or len(rest) > MAX_NAME:
            raise InvalidSpec(f"filter {_shown(text)}: the node name must be 1 to {MAX_NAME}")
        return Filter(kind, rest)
    key, has_value, value = rest.partition("=")
    if not key or len(key) > MAX_LABEL_KEY or len(value) > MAX_LABEL_VALUE:
        raise InvalidSpec(f"filter {_shown(text)}: the label key or value is empty or too long")
    return Filter(kind, key, value if has_value else None)


def parse_all(texts: Sequence[str]) -> list[Filter]:
    if len(texts) > MAX_FILTERS:
        raise InvalidSpec(f"{len(texts)} filters: at most {MAX_FILTERS}")
    return [parse(t) for t in texts]


def matcher(filters: Sequence[Filter]) -> Callable[[JobStatus], bool]:
    """A predicate true when every filter matches (none: always)."""
    return lambda st: all(f.matches(st) for f in filters)
