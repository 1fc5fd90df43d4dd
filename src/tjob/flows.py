"""Decisions written once, for a sync and an async face (httpx's pattern).

A *flow* is a generator holding an operation's decisions. It yields each :class:`Step` it
needs done and gets the step's result back (or its exception thrown in). :func:`drive` runs a
step in place; :func:`drive_async` awaits the step's async form, which never blocks the event
loop: a blocking call goes to a thread (:func:`blocking`), a wait is awaited on an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Step:
    """One thing a flow needs: ``run`` for the sync face, ``run_async`` for the async one."""

    run: Callable[[], Any]
    run_async: Callable[[], Awaitable[Any]]


Flow = Generator[Step, Any, T]


def blocking(fn: Callable[[], Any]) -> Step:
    """A call that may block (disk writes, SQLite, cgroup writes, waits on processes): in
    place for the sync face, in a thread for the async one. Batch what goes together into one
    call: each thread hop costs tens of microseconds."""
    return Step(fn, lambda: asyncio.to_thread(fn))


def drive(flow: Flow[T]) -> T:
    """Run ``flow`` to its end, each step in place."""
    try:
        step = next(flow)
        while True:
            step = _resume(flow, _outcome(step.run))
    except StopIteration as done:
        value: T = done.value
        return value


async def drive_async(flow: Flow[T]) -> T:
    """Run ``flow`` to its end, awaiting each step's async form."""
    try:
        step = next(flow)
        while True:
            step = _resume(flow, await _outcome_async(step))
    except StopIteration as done:
        value: T = done.value
        return value


_Outcome = tuple[Any, Exception | None]  # a step's result, or what it raised


def _outcome(run: Callable[[], Any]) -> _Outcome:
    try:
        return run(), None
    except Exception as e:
        return None, e


async def _outcome_async(step: Step) -> _Outcome:
    try:
        return await step.run_async(), None
    except Exception as e:
        return None, e


def _resume(flow: Flow[T], outcome: _Outcome) -> Step:
    """The flow's next step, given what its last step returned or raised."""
    result, error = outcome
    return flow.send(result) if error is None else flow.throw(error)
