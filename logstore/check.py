"""`logstore check DIR`: verify every record of a data directory and report each damaged place.

Unlike recovery, which stops at the first bad frame of a tail and cuts it, `check` keeps going
past damage so that one run lists every damaged place: after a frame whose header is sound but
whose CRC fails it jumps by the frame's length; after a broken header it searches forward for
the next frame that is sound and continues the offsets. It never modifies the directory, so it
can be run on a copy, or on a live store (whose tail may then show as torn while a write is in
flight).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from . import record
from .meta import MetaStore
from .record import FrameError
from .segment import list_segments, pread_exactly, segment_name

_MAGIC_BYTES = record.MAGIC.to_bytes(2, "little")
_MAGIC_AT = record.HEADER_SIZE - 2
_SEARCH_CHUNK = 1 << 20


@dataclass(slots=True, frozen=True)
class Damage:
    topic: str
    file: str
    position: int
    detail: str

    def __str__(self) -> str:
        return f"DAMAGED topic {self.topic!r}: {self.file} at byte {self.position}: {self.detail}"


@dataclass(slots=True)
class Report:
    topics: int = 0
    segments: int = 0
    frames: int = 0
    messages: int = 0
    bytes_checked: int = 0
    damage: list[Damage] | None = None


def check_store(path: str, progress: Callable[[int, int], None] | None = None) -> Report:
    """Verify every frame of every topic under `path`; `progress(done, total)` in bytes."""
    meta = MetaStore(os.path.join(path, "meta"), readonly=True)
    try:
        topics = meta.topics()
    finally:
        meta.close()
    by_uid = {m.uid: topic_id for topic_id, m in topics.items()}
    topics_dir = os.path.join(path, "topics")
    report = Report(damage=[])
    work = []
    for entry in sorted(os.listdir(topics_dir)):
        uid_text = entry.split("-", 1)[0]
        topic_id = by_uid.get(int(uid_text)) if uid_text.isdigit() else None
        if topic_id is None:
            continue  # an orphan of an interrupted create or delete: the next open removes it
        directory = os.path.join(topics_dir, entry)
        work.append((topic_id, directory, list_segments(directory)))
    total = sum(
        os.path.getsize(os.path.join(d, segment_name(b))) for _, d, bases in work for b in bases
    )
    for topic_id, directory, bases in work:
        report.topics += 1
        if not bases:
            report.damage.append(Damage(topic_id, directory, 0, "no segment file"))
            continue
        expected = bases[0]
        for base in bases:
            file = os.path.join(directory, segment_name(base))
            if base != expected:
                report.damage.append(
                    Damage(
                        topic_id,
                        file,
                        0,
                        f"segment starts at offset {base}, log is at "
                        f"{expected}: offsets {expected} to {base - 1} are missing",
                    )
                )
            report.segments += 1
            expected = _check_segment(topic_id, file, base, report, progress, total)
    return report


def _check_segment(topic_id, file, base, report, progress, total) -> int:
    size = os.path.getsize(file)
    expected = base
    position = 0
    last_progress = time.monotonic()
    fd = os.open(file, os.O_RDONLY)
    try:
        while position < size:
            header = framed = None
            try:
                head = pread_exactly(fd, record.HEADER_SIZE, position)
                header = record.parse_header(head, 0)
                if header.base_offset != expected:
                    raise FrameError(f"frame has offset {header.base_offset}, expected {expected}")
                if position + header.length > size:
                    raise FrameError(
                        f"frame of {header.length} bytes runs past the end of the file"
                    )
                framed = header
                record.check_crc(pread_exactly(fd, header.length, position), 0, header)
                report.frames += 1
                report.messages += header.count
                position += header.length
                expected = header.next_offset
            except FrameError as exc:
                report.damage.append(Damage(topic_id, file, position, str(exc)))
                if framed is not None:  # a sound frame header with a bad body: skip the body
                    position += framed.length
                    expected = framed.next_offset
                else:
                    position, expected = _resync(fd, position + 1, size, expected)
            now = time.monotonic()
            if progress is not None and now - last_progress >= 1.0:
                progress(report.bytes_checked + position, total)
                last_progress = now
    finally:
        os.close(fd)
    report.bytes_checked += size
    if progress is not None:
        progress(report.bytes_checked, total)
    return expected


def _resync(fd: int, start: int, size: int, expected: int) -> tuple[int, int]:
    """The next sound frame at or after `start` whose offset is >= `expected`, or end of file."""
    search = start + _MAGIC_AT
    while search < size:
        chunk = pread_exactly(fd, _SEARCH_CHUNK + 1, search)
        found = chunk.find(_MAGIC_BYTES)
        while found >= 0:
            candidate = search + found - _MAGIC_AT
            if candidate >= start and _sound_frame_at(fd, candidate, size, expected):
                header = record.parse_header(pread_exactly(fd, record.HEADER_SIZE, candidate), 0)
                return candidate, header.base_offset
            found = chunk.find(_MAGIC_BYTES, found + 1)
        search += _SEARCH_CHUNK
    return size, expected


def _sound_frame_at(fd: int, position: int, size: int, expected: int) -> bool:
    try:
        header = record.parse_header(pread_exactly(fd, record.HEADER_SIZE, position), 0)
        if header.base_offset < expected or position + header.length > size:
            return False
        record.check_crc(pread_exactly(fd, header.length, position), 0, header)
        return True
    except FrameError:
        return False


def run(path: str, out: TextIO = sys.stdout) -> int:
    """The `logstore check` command: print progress and damage; exit code 1 on damage."""
    if not os.path.isdir(os.path.join(path, "meta")):
        print(f"{path} is not a logstore data directory (no meta/)", file=out)
        return 2
    if not record.CRC_IS_NATIVE:
        print("WARNING: crcmod's C extension is missing; checking runs ~40x slower", file=out)

    def progress(done: int, total: int) -> None:
        percent = 100 * done / total if total else 100
        print(f"checked {done / 2**20:.1f} of {total / 2**20:.1f} MiB ({percent:.0f}%)", file=out)

    report = check_store(path, progress)
    for damage in report.damage:
        print(damage, file=out)
    verdict = f"{len(report.damage)} damaged place(s)" if report.damage else "no damage"
    print(
        f"{report.topics} topic(s), {report.segments} segment(s), {report.frames} frame(s), "
        f"{report.messages} message(s): {verdict}",
        file=out,
    )
    return 1 if report.damage else 0
