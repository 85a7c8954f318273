"""Frame encoding (logstore.record): round trips, and damage caught by framing or CRC."""

from __future__ import annotations

import random
import struct

import pytest

from logstore import Store
from logstore import frames as rec
from logstore.engine.local.segment import SUFFIX
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


def test_the_native_crc_extensions_are_in_use():
    assert rec.REFERENCE_IS_NATIVE, "crcmod runs its pure-Python fallback; reinstall it with gcc"
    assert rec.CRC_IS_NATIVE, "google-crc32c runs its pure-Python fallback"
    assert rec.crc32c(b"123456789") == rec.reference_crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("seed", range(4))
def test_hardware_crc_equals_the_crcmod_reference_on_random_inputs(seed):
    rng = random.Random(seed)
    for _ in range(500):
        data = rng.randbytes(rng.choice([0, 1, 7, 8, 63, 64, 65, 4096, rng.randrange(200_000)]))
        assert rec.crc32c(data) == rec.reference_crc32c(data), len(data)


def test_hardware_crc_equals_the_crcmod_reference_on_every_stored_frame(tmp_path):
    with Store(tmp_path / "data", fsync="never") as store:
        store.create_topic("t", segment_bytes=1 << 16)
        rng = random.Random(7)
        for i in range(300):
            values = [rng.randbytes(rng.randrange(300)) for _ in range(rng.randrange(1, 20))]
            if i % 3:
                store.write_many("t", values)
            else:
                store.write_many(
                    "t", [Record(v, key=b"k%d" % i, headers={"h": str(i)}) for v in values]
                )
    seen = 0
    for path in sorted((tmp_path / "data").glob("topics/*/*" + SUFFIX)):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            length, crc = struct.unpack_from("<II", data, pos)
            body = data[pos + 8 : pos + length]
            assert crc == rec.crc32c(body) == rec.reference_crc32c(body), (path, pos)
            pos += length
            seen += 1
    assert seen == 300
