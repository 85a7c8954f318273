"""Frame encoding (logstore.record): round trips, and damage caught by framing or CRC."""

from __future__ import annotations

import pytest

from logstore import frames as rec
from logstore.frames import FrameError, Record


def frames_of(data: bytes):
    header = rec.parse_header(data, 0)
    rec.check_crc(data, 0, header)
    return header, rec.decode(data, 0, header, header.base_offset, header.count)


def test_plain_batch_round_trips_with_shared_timestamp():
    data = rec.encode_many(42, 1234, [b"a", b"", b"ccc"])
    header, messages = frames_of(data)
    assert (header.base_offset, header.count, header.length) == (42, 3, len(data))
    assert [(m.offset, m.timestamp, m.key, dict(m.headers), m.value) for m in messages] == [
        (42, 1234, None, {}, b"a"),
        (43, 1234, None, {}, b""),
        (44, 1234, None, {}, b"ccc"),
    ]


def test_keys_and_headers_round_trip_next_to_plain_messages():
    records = [Record(b"v1", key=b"k"), Record(b"v2"), Record(b"v3", key=b"", headers={"ü": "✓"})]
    _, messages = frames_of(rec.encode(0, 1, records))
    assert [(m.key, dict(m.headers), m.value) for m in messages] == [
        (b"k", {}, b"v1"),
        (None, {}, b"v2"),
        (b"", {"ü": "✓"}, b"v3"),
    ]


def test_decode_from_the_middle_of_a_frame_with_a_limit():
    data = rec.encode(10, 1, [Record(b"%d" % i, key=b"k%d" % i) for i in range(10)])
    header = rec.parse_header(data, 0)
    messages = rec.decode(data, 0, header, 13, 2)
    assert [(m.offset, m.key, m.value) for m in messages] == [(13, b"k3", b"3"), (14, b"k4", b"4")]


_FRAME = rec.encode_many(0, 99, [b"hello world", b"second message!!"])


@pytest.mark.parametrize("position", range(len(_FRAME)))
def test_every_flipped_bit_of_every_byte_of_a_frame_is_caught(position):
    for bit in range(8):
        data = bytearray(_FRAME)
        data[position] ^= 1 << bit
        with pytest.raises(FrameError):
            frames_of(bytes(data))


def test_a_truncated_frame_is_caught():
    data = rec.encode_many(0, 1, [b"hello"])
    for cut in range(len(data)):
        with pytest.raises(FrameError):
            frames_of(data[:cut])


def test_the_native_crc_extension_is_in_use():
    assert rec.CRC_IS_NATIVE, "crcmod runs its pure-Python fallback; reinstall it with gcc"
    assert rec.crc32c(b"123456789") == 0xE3069283
