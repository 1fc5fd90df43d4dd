"""The server's fixes to grpclib and hyperframe (tjob.api.h2fixes): still in place on the
versions installed, and doing what they say."""

from __future__ import annotations

import binascii
from types import SimpleNamespace

import hyperframe.frame
import pytest
from grpclib.protocol import EventsProcessor

from tjob.api import h2fixes


class _Woken:
    def __init__(self, name: int, order: list[int]) -> None:
        self.name, self.order = name, order

    def set(self) -> None:
        self.order.append(self.name)


def _wake_all(processor: object) -> None:
    EventsProcessor.process_window_updated(processor, SimpleNamespace(stream_id=0))  # type: ignore[arg-type]


def test_a_connection_window_update_wakes_every_stream_starting_one_further_each_time() -> None:
    h2fixes.install()
    order: list[int] = []
    streams = {i: SimpleNamespace(window_updated=_Woken(i, order)) for i in (1, 3, 5, 7)}
    processor = SimpleNamespace(streams=streams)
    firsts = []
    for _ in range(8):
        order.clear()
        _wake_all(processor)
        assert sorted(order) == [1, 3, 5, 7]  # every stream, once
        firsts.append(order[0])
    assert set(firsts) == {1, 3, 5, 7}  # each stream is first in turn: nobody starves
    order.clear()
    EventsProcessor.process_window_updated(processor, SimpleNamespace(stream_id=5))  # type: ignore[arg-type]
    assert order == [5]  # a stream's own update wakes that stream only


def test_a_data_frames_repr_encodes_only_what_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    h2fixes.install()
    encoded: list[int] = []
    hexlify = binascii.hexlify

    def counting(data: bytes) -> bytes:
        encoded.append(len(data))
        return hexlify(data)

    monkeypatch.setattr(binascii, "hexlify", counting)
    big = hyperframe.frame.DataFrame(1, data=b"\xab" * (16 << 10))
    text = repr(big)
    assert encoded and max(encoded) <= 11  # not the 16 KiB body
    assert "<hex:abababababababababab...>" in text and len(text) < 200
    small = hyperframe.frame.DataFrame(1, data=b"\x01\x02")
    assert "<hex:0102>" in repr(small)
