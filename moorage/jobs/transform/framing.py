"""The binary record formats SplitType names: MXNet RecordIO and TensorFlow TFRecord.

Each record is returned twice: as it lies in the object (header, payload, padding or checksums; what a
MultiRecord request carries) and as its bare payload (what a SingleRecord request carries, since
SageMaker removes the padding there). A framing error raises FramingError with the record's 1-based
number and byte offset, so a corrupt object fails with a message that points into it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_LENGTH_MASK = (1 << 29) - 1


class FramingError(ValueError):
    """The object is not a sequence of well-formed records; ``record`` is the 1-based number."""

    def __init__(self, record: int, message: str) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class Framed:
    """One record: ``framed`` as stored in the object, ``payload`` the data inside it."""

    framed: bytes
    payload: bytes


def split_recordio(data: bytes) -> list[Framed]:
    """MXNet RecordIO: little-endian magic 0xced7230a, then a word whose top 3 bits are the
    continuation flag (0 whole, 1 first, 2 middle, 3 last part) and low 29 bits the length, then the
    data padded to 4 bytes. A payload that held the magic word was cut there; the parts are joined
    back with the magic in between (as dmlc-core's reader does)."""
    records: list[Framed] = []
    parts: list[bytes] = []
    first = 0
    pos = 0
    while pos < len(data):
        number = len(records) + 1
        if len(data) - pos < 8:
            raise FramingError(number, f"RecordIO header cut short at byte {pos} (needs 8 bytes)")
        magic, word = struct.unpack_from("<II", data, pos)
        if magic != RECORDIO_MAGIC:
            raise FramingError(number, f"no RecordIO magic 0xced7230a at byte {pos} (found {magic:#010x})")
        flag, length = word >> 29, word & _LENGTH_MASK
        start = pos + 8
        if start + length > len(data):
            raise FramingError(
                number, f"RecordIO record at byte {pos} says {length} bytes; the object ends first"
            )
        chunk = data[start : start + length]
        end = min(start + (length + 3) // 4 * 4, len(data))
        if flag == 0 and not parts:
            records.append(Framed(data[pos:end], chunk))
        elif flag == 1 and not parts:
            first, parts = pos, [chunk]
        elif flag == 2 and parts:
            parts.append(chunk)
        elif flag == 3 and parts:
            parts.append(chunk)
            records.append(Framed(data[first:end], _MAGIC_BYTES.join(parts)))
            parts = []
        else:
            raise FramingError(number, f"RecordIO continuation flag {flag} out of place at byte {pos}")
        pos = end
    if parts:
        raise FramingError(len(records) + 1, "the object ends inside a multi-part RecordIO record")
    return records


def frame_recordio(payload: bytes) -> bytes:
    """One RecordIO record as dmlc-core writes it: cut at each 4-byte-aligned magic word."""
    pieces: list[bytes] = []
    start = 0
    for pos in range(0, len(payload) - 3, 4):
        if payload[pos : pos + 4] == _MAGIC_BYTES:
            pieces.append(payload[start:pos])
            start = pos + 4
    pieces.append(payload[start:])
    out = bytearray()
    for index, piece in enumerate(pieces):
        flag = 0 if len(pieces) == 1 else 1 if index == 0 else 3 if index == len(pieces) - 1 else 2
        out += struct.pack("<II", RECORDIO_MAGIC, flag << 29 | len(piece))
        out += piece + b"\0" * (-len(piece) % 4)
    return bytes(out)


def split_tfrecord(data: bytes) -> list[Framed]:
    """TFRecord: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data (all
    little-endian). The length's checksum is verified, which catches a misaligned or foreign file;
    the data's is left to the model, as reading it in Python would cost more than the request."""
    records: list[Framed] = []
    pos = 0
    while pos < len(data):
        number = len(records) + 1
        if len(data) - pos < 12:
            raise FramingError(number, f"TFRecord header cut short at byte {pos} (needs 12 bytes)")
        length_bytes = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        if length_crc != masked_crc32c(length_bytes):
            raise FramingError(
                number, f"TFRecord length checksum does not match at byte {pos}: not a TFRecord file?"
            )
        end = pos + 12 + length + 4
        if end > len(data):
            raise FramingError(
                number, f"TFRecord record at byte {pos} says {length} bytes; the object ends first"
            )
        records.append(Framed(data[pos:end], data[pos + 12 : pos + 12 + length]))
        pos = end
    return records


def frame_tfrecord(payload: bytes) -> bytes:
    """One TFRecord record, checksums included."""
    length = struct.pack("<Q", len(payload))
    return b"".join(
        (
            length,
            struct.pack("<I", masked_crc32c(length)),
            payload,
            struct.pack("<I", masked_crc32c(payload)),
        )
    )


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord uses."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked checksum: rotate right by 15 and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
