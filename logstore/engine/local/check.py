"""`logstore check DIR`: verify every record of a data directory and report each damaged place.

It walks every segment with `segment.scan` in resync mode, the walk recovery uses, so one run
lists every damaged place: after a bad frame (header or body) it goes on at the next frame that
is sound and continues the offsets. A bad region with nothing sound after it is reported too
(recovery would cut it in the newest segment). It never modifies the directory, so it can be
run on a copy, or on a live store (whose tail may then show as torn while a write is in
flight).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from ... import frames as record
from .meta import MetaStore
from .segment import DamagedRegion, ScanStop, list_segments, scan, segment_name


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
        topic_id = by_uid.pop(int(uid_text), None) if uid_text.isdigit() else None
        if topic_id is None:
            continue  # an orphan of an interrupted create or delete: the next open removes it
        directory = os.path.join(topics_dir, entry)
        work.append((topic_id, directory, list_segments(directory)))
    for topic_id in sorted(by_uid.values()):  # named by the metadata, no directory on disk
        report.topics += 1
        report.damage.append(Damage(topic_id, topics_dir, 0, "the topic has no directory"))
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
            if expected is not None and base != expected:
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


def _check_segment(topic_id, file, base, report, progress, total) -> int | None:
    """Walk one segment in resync mode, reporting each damaged region; the offset after it
    (None when the segment ends in damage)."""
    size = os.path.getsize(file)
    last_progress = time.monotonic()
    fd = os.open(file, os.O_RDONLY)
    try:
        for item in scan(fd, 0, base, resync=True):
            if isinstance(item, ScanStop):
                break
            if isinstance(item, DamagedRegion):
                report.damage.append(Damage(topic_id, file, item.position, item.reason))
                continue
            position, header = item
            report.frames += 1
            report.messages += header.count
            now = time.monotonic()
            if progress is not None and now - last_progress >= 1.0:
                progress(report.bytes_checked + position, total)
                last_progress = now
    finally:
        os.close(fd)
    if item.error is not None:  # reported here, so a gap after it is not reported again
        report.damage.append(Damage(topic_id, file, item.position, item.error))
        return None
    report.bytes_checked += size
    if progress is not None:
        progress(report.bytes_checked, total)
    return item.next_offset


def run(
    path: str, out: TextIO = sys.stdout, progress: Callable[[int, int], None] | None = None
) -> int:
    """The `logstore check` command: print damage and a summary; exit code 1 on damage.
    Progress goes to `progress(done, total)` if given, else as lines to `out`."""
    if not os.path.isdir(os.path.join(path, "meta")):
        print(f"{path} is not a logstore data directory (no meta/)", file=out)
        return 2
    if not record.CRC_IS_NATIVE:
        print("WARNING: google-crc32c's C extension is missing; checking runs slowly", file=out)

    def print_progress(done: int, total: int) -> None:
        percent = 100 * done / total if total else 100
        print(f"checked {done / 2**20:.1f} of {total / 2**20:.1f} MiB ({percent:.0f}%)", file=out)

    report = check_store(path, progress or print_progress)
    for damage in report.damage:
        print(damage, file=out)
    verdict = f"{len(report.damage)} damaged place(s)" if report.damage else "no damage"
    print(
        f"{report.topics} topic(s), {report.segments} segment(s), {report.frames} frame(s), "
        f"{report.messages} message(s): {verdict}",
        file=out,
    )
    return 1 if report.damage else 0
