"""What the server and its capture process say to each other over two pipes.

Server -> capture process, a frame: ``<length:u32><weight:u64>`` then `length` bytes of
``marshal.dumps((targets, drops, records, flush))``: taps seen for the first time as ``(number,
Target.to_wire())``, records dropped for want of room as ``(endpoint, variant, count)``, the records
(records.Record), and a number other than 0 when the sender wants everything waiting written now.
`weight` is what the server counts as held for these records until the capture process says they are
gone.

Capture process -> server, after each write: ``<released:u64><written:u32><dropped:u32><flush:u32>``:
the weight of the records written or dropped, how many of each, and the last flush number done.

marshal (C, plain tuples of bytes, str, int, float) is the cheapest serializer of the standard library;
both ends run the same Python, which its format needs."""

from __future__ import annotations

import marshal
import struct
from typing import Any

FRAME_HEAD = struct.Struct("<IQ")
ACK = struct.Struct("<QIII")
MAX_FRAME = 2**32 - 1


def frame(payload: tuple[Any, ...]) -> bytes:
    """The serialized body of one frame (its head is added by whoever sends it, with its weight)."""
    return marshal.dumps(payload)


def head(body: bytes, weight: int) -> bytes:
    return FRAME_HEAD.pack(len(body), weight)


class FrameReader:
    """Frames out of a byte stream that arrives in pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, Any]]:
        """(weight, payload) of each frame completed by `data`."""
        buffer = self._buffer
        buffer += data
        out: list[tuple[int, Any]] = []
        start = 0
        while len(buffer) - start >= FRAME_HEAD.size:
            length, weight = FRAME_HEAD.unpack_from(buffer, start)
            end = start + FRAME_HEAD.size + length
            if len(buffer) < end:
                break
            out.append((weight, marshal.loads(buffer[start + FRAME_HEAD.size : end])))
            start = end
        del buffer[:start]
        return out


class AckReader:
    """Acknowledgements out of a byte stream that arrives in pieces."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, int, int, int]]:
        buffer = self._buffer + data
        whole = len(buffer) - len(buffer) % ACK.size
        self._buffer = buffer[whole:]
        return [ACK.unpack_from(buffer, at) for at in range(0, whole, ACK.size)]
