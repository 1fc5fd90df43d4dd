"""Who is calling, and which jobs they may touch: the single authorization guard.

Identity is the subject common name of the client's verified certificate (the TLS layer already
checked it against the CA). Every handler goes through :class:`Guard`: it is the only code that
compares a job's owner with the caller.

The rule: an owner sees and controls their jobs; an admin (a name given to ``tjobs --admin``)
sees and controls everyone's. A job that exists but belongs to someone else gets exactly the
answer a job that does not exist gets — :class:`Unauthorized`, sent as NOT_FOUND "unauthorized"
— so the API is no oracle for other users' job ids. Id prefixes are resolved among the jobs the
caller may see, so an ambiguous prefix never reveals that someone else has a similar id.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import AmbiguousJobId, InvalidSpec, JobNotFound, TjobError
from ..naming import MAX_NAME
from .logtext import shown
from .tls import identity_from_peercert

if TYPE_CHECKING:
    from ..engine import Engine, Job

MIN_PREFIX = 8
ID_LENGTH = 32  # 128 bits in hex
_ID_RE = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},{ID_LENGTH}}}")
UNAUTHORIZED = "unauthorized"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")  # a bad id rather than a name: say what an id is


class Unauthenticated(TjobError):
    """The connection carries no usable client identity (no certificate common name)."""


class Unauthorized(JobNotFound):
    """No job of the caller's has this id: it does not exist or is someone else's."""

    def __init__(self) -> None:
        super().__init__(UNAUTHORIZED)


@dataclass(frozen=True)
class Caller:
    """An authenticated client."""

    name: str
    admin: bool = False

    def __str__(self) -> str:
        return shown(self.name)  # for the log: a name cannot start a line there


def parse_job_ref(ref: str) -> str:
    """A job id or prefix as the engine spells it; InvalidSpec unless 8-32 hex characters."""
    norm = ref.strip().lower()
    if not _ID_RE.fullmatch(norm):
        shown = ref if len(ref) <= 40 else ref[:40] + "..."
        raise InvalidSpec(
            f"job id {shown!r} is not valid: give the id, a prefix of at least "
            f"{MIN_PREFIX} of its {ID_LENGTH} hex characters, or the name of one of your jobs"
        )
    return norm


class Guard:
    """The authorization decisions of one server: identity, ownership, visibility."""

    def __init__(self, engine: Engine, admins: Iterable[str] = ()) -> None:
        self._engine = engine
        self.admins = frozenset(admins)

    def caller(self, peercert: Mapping[str, object] | None) -> Caller:
        """The identity behind a connection's verified certificate (``getpeercert()``)."""
        name = identity_from_peercert(peercert)
        if name is None:
            raise Unauthenticated(
                "the client certificate has no usable subject common name (one, printable, "
                "without outer spaces)"
            )
        return Caller(name, name in self.admins)

    def may_see(self, caller: Caller, job: Job) -> bool:
        return caller.admin or job.owner == caller.name

    def job(self, caller: Caller, ref: str) -> Job:
        """The caller's job with this id or unique prefix.

        Raises InvalidSpec for a malformed id, AmbiguousJobId when several of the caller's jobs
        match, and Unauthorized when none does (missing or someone else's: the same answer).
        """
        named = self._named(caller, ref)
        if named is not None:
            return named
        try:
            prefix = parse_job_ref(ref)
        except InvalidSpec:
            if _NAME_RE.fullmatch(ref) and len(ref) <= MAX_NAME and not _HEX_RE.fullmatch(ref):
                raise Unauthorized() from None  # a name, but none of the caller's jobs has it
            raise
        try:
            job = self._engine.get(prefix)
        except AmbiguousJobId:
            # Ambiguous among all jobs; it may still be unique among the caller's.
            mine = [j for j in self.jobs(caller) if j.id.startswith(prefix)]
            if len(mine) == 1:
                return mine[0]
            if not mine:
                raise Unauthorized() from None
            raise AmbiguousJobId(
                f"job id prefix {prefix} is ambiguous: it matches {len(mine)} of your jobs; "
                "give more characters"
            ) from None
        except JobNotFound:
            raise Unauthorized() from None
        if not self.may_see(caller, job):
            raise Unauthorized()
        return job

    def _named(self, caller: Caller, ref: str) -> Job | None:
        """The caller's job named ``ref`` (names come before id prefixes, as in docker)."""
        if not 0 < len(ref) <= MAX_NAME:
            return None
        return self._engine.find(caller.name, ref)

    def jobs(self, caller: Caller) -> list[Job]:
        """The jobs the caller may see, newest first."""
        everyone = self._engine.jobs()
        if caller.admin:
            return everyone
        return [j for j in everyone if j.owner == caller.name]

    def resolve(self, caller: Caller, refs: Sequence[str]) -> list[Job]:
        """The caller's jobs for many ids or prefixes, from one snapshot of the job table: a
        sorted list searched by bisection, so each ref costs log(jobs), never a scan."""
        if len(refs) <= 1 or any(self._named(caller, r) is not None for r in refs):
            return [self.job(caller, r) for r in refs]
        prefixes = [parse_job_ref(ref) for ref in refs]  # malformed ones first, nothing looked up
        mine = sorted(self.jobs(caller), key=lambda j: j.id)
        ids = [j.id for j in mine]
        out = []
        for prefix in prefixes:
            i = bisect.bisect_left(ids, prefix)
            if i == len(ids) or not ids[i].startswith(prefix):
                raise Unauthorized()
            if i + 1 < len(ids) and ids[i + 1].startswith(prefix):
                raise AmbiguousJobId(
                    f"job id prefix {prefix} is ambiguous among your jobs; give more characters"
                )
            out.append(mine[i])
        return out
