"""Frame encoding (logstore.record): round trips, and damage caught by framing or CRC."""

from __future__ import annotations

import platform
import random
import struct

import pytest

from logstore import Store, _framesc
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


def test_plain_frames_are_decoded_in_c_with_the_crc_instruction():
    assert _framesc.read_plain is rec.read_plain
    if platform.machine() == "x86_64":
        assert _framesc.CRC_INSTRUCTION, "SSE4.2 missing: frames are checked through Python"


@pytest.mark.parametrize("seed", range(3))
def test_the_c_crc_agrees_with_the_crcmod_reference_and_stops_at_a_wrong_one(seed):
    rng = random.Random(seed)
    for _ in range(300):
        value = rng.randbytes(rng.choice([0, 1, 7, 8, 9, 63, 64, 65, 4096, rng.randrange(70_000)]))
        tail = rec.encode_many(5, 6, [value])[8:]
        signed = struct.pack("<II", 8 + len(tail), rec.reference_crc32c(tail)) + tail
        out: list = []
        assert rec.read_plain(signed, 0, 5, 0, 10, 10, out) == (len(signed), 6)
        assert [(m.offset, m.timestamp, m.value) for m in out] == [(5, 6, value)]
        wrong = struct.pack("<II", 8 + len(tail), rec.reference_crc32c(tail) ^ 1) + tail
        out = []
        assert rec.read_plain(wrong, 0, 5, 0, 10, 10, out) == (0, 5)  # left to Python
        assert out == []
        with pytest.raises(FrameError, match="CRC mismatch"):
            rec.read_frames(wrong, 0, 5, 0, 10, 10, [])


@pytest.mark.parametrize("seed", range(4))
def test_read_frames_gives_what_decoding_each_frame_in_python_gives(seed):
    """Plain frames (one message or many) go through C, keyed ones through Python; any
    start, limit and visible end give the messages `decode` gives frame by frame."""
    rng = random.Random(seed)
    frames, expected, offset = [], [], 0  # expected: (frame base, message)
    for _ in range(60):
        n = rng.choice([1, 1, 1, 2, 7])
        values = [rng.randbytes(rng.randrange(40)) for _ in range(n)]
        if rng.random() < 0.3:
            data = rec.encode(offset, offset * 10, [Record(v, key=b"k") for v in values])
        else:
            data = rec.encode_many(offset, offset * 10, values)
        frames.append((offset, data))
        expected += [(offset, m) for m in frames_of(data)[1]]
        offset += n
    buf = b"".join(data for _, data in frames)
    for _ in range(300):
        first, limit, stop = rng.randrange(offset), rng.randrange(1, 50), rng.randrange(offset + 1)
        i = max(i for i, (base, _) in enumerate(frames) if base <= first)
        pos = sum(len(data) for _, data in frames[:i])
        out: list = []
        rec.read_frames(buf, pos, frames[i][0], first, stop, limit, out)
        want = [m for base, m in expected if m.offset >= first and base < stop][:limit]
        got = [(m.offset, m.timestamp, m.key, dict(m.headers), m.value) for m in out]
        assert got == [(m.offset, m.timestamp, m.key, dict(m.headers), m.value) for m in want]
        assert all(type(m) is rec.Message for m in out)


@pytest.mark.parametrize("position", range(len(_FRAME)))
def test_a_flipped_bit_never_reaches_a_reader_as_a_message(position):
    """Through the C path: damage raises, or leaves the frame unread as incomplete."""
    for bit in range(8):
        data = bytearray(_FRAME)
        data[position] ^= 1 << bit
        out: list = []
        try:
            rec.read_frames(bytes(data), 0, 0, 0, 10, 10, out)
        except FrameError:
            continue
        assert out == [], (position, bit)
