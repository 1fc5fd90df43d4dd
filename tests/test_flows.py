"""Flows: one set of decisions, a sync face that runs steps in place and an async face that
keeps blocking calls off the event loop's thread."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tjob.flows import Flow, Step, blocking, drive, drive_async


def flow(log: list[str]) -> Flow[str]:
    here = yield blocking(threading.get_ident)
    log.append("same" if here == threading.get_ident() else "other")
    try:
        yield blocking(lambda: 1 / 0)
    except ZeroDivisionError:
        log.append("caught")

    async def later() -> str:
        return "awaited"

    waited: str = yield Step(lambda: "in place", later)
    return waited


def test_sync_face_runs_steps_in_place() -> None:
    log: list[str] = []
    assert drive(flow(log)) == "in place"
    assert log == ["same", "caught"]


def test_async_face_runs_blocking_steps_in_a_thread() -> None:
    log: list[str] = []
    assert asyncio.run(drive_async(flow(log))) == "awaited"
    assert log == ["other", "caught"]


def test_an_error_the_flow_does_not_catch_reaches_the_caller() -> None:
    def fail() -> None:
        raise LookupError("no such thing")

    def failing() -> Flow[None]:
        yield blocking(fail)

    with pytest.raises(LookupError):
        drive(failing())
    with pytest.raises(LookupError):
        asyncio.run(drive_async(failing()))
