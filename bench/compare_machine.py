"""What the machine is: cores, memory, disk, and how long an fsync takes on it.

The durable rows are bounded by the disk's flush latency and the others mostly by the
CPU, so a reader needs both to compare our table with theirs.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time

_FSYNC_SAMPLES = 200


def filesystem(path: str) -> tuple[str, str]:
    """(device, filesystem type) of the mount holding `path`, from /proc/mounts."""
    best, found = "", ("?", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                device, mount, fstype, *_ = line.split()
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, found = mount, (device, fstype)
    except OSError:
        pass
    return found


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _disk_kind(device: str) -> str:
    """What sysfs says of a /dev/ block device (virtual disks often claim "rotational")."""
    name = os.path.basename(device)
    for candidate in (name, name.rstrip("0123456789")):
        try:
            with open(f"/sys/block/{candidate}/queue/rotational") as f:
                return f"sysfs: rotational={f.read().strip()}"
        except OSError:
            continue
    return "sysfs: ?"


def fdatasync_ms(directory: str) -> float:
    """Median time of a 4 KiB write + fdatasync in `directory`: the cost of one durable ack."""
    fd, path = tempfile.mkstemp(dir=directory)
    try:
        block, samples = b"\0" * 4096, []
        for _ in range(_FSYNC_SAMPLES):
            start = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(samples) * 1000


def describe(directory: str) -> dict[str, str]:
    """The machine facts the results show, for data kept in `directory`."""
    device, fstype = filesystem(directory)
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores",
        "memory": f"{_memory_gib():.1f} GiB",
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "disk": f"{device} ({_disk_kind(device)}), {fstype}, data in {directory}",
        "4 KiB write + fdatasync": f"{fdatasync_ms(directory):.2f} ms (median of 200)",
    }
