"""The results: rows of figures per system, the RESULTS.md table, and the bar chart.

Every ratio is logstore's median over the peer's median, as the issue asks. Whether a
ratio above 1 is good depends on the unit (throughput: yes; latency: no), so the table
also says "ahead" or "behind", and the chart plots the advantage (the ratio, or its
inverse for latency): a bar right of 1 is logstore ahead, whatever was measured.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from compare_workloads import BATCH, CLIENTS, Scale

LOGSTORE = "logstore"
TRAILING = 0.8  # "trails by more than 20%": the rows that need a profile
LATENCY_TARGETS_MS = {"6 p50": 0.5, "6 p99": 1.5}  # issue #10: logstore's row 6, absolute


class Systems(Protocol):
    """What a run learnt about the systems it compared (`compare.Runner` provides it)."""

    versions: dict[str, str]
    settings: dict[str, dict[str, str]]
    skipped: dict[str, str]


@dataclass
class Row:
    """One workload at one payload size: every system's figures, or why it has none."""

    key: str  # "1", ..., "6 p99", "7 get": the workload number
    title: str
    size: int  # payload bytes
    unit: str
    higher_is_better: bool
    peers: tuple[str, ...]
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """System -> per run, the CPU (in cores) its server and the load process used."""
    problems: dict[str, str] = field(default_factory=dict)
    """System -> why it has no figure ("skipped: ..." or "failed: ...")."""

    def add(self, system: str, value: float, cpu: tuple[float, float]) -> None:
        self.samples.setdefault(system, []).append(value)
        self.cpu.setdefault(system, []).append(cpu)

    def median(self, system: str) -> float | None:
        if system in self.problems or not self.samples.get(system):
            return None
        return statistics.median(self.samples[system])

    def advantage(self, peer: str) -> float | None:
        """How many times better logstore is than `peer` here (below 1: worse)."""
        ours, theirs = self.median(LOGSTORE), self.median(peer)
        if ours is None or theirs is None or ours <= 0 or theirs <= 0:
            return None
        return ours / theirs if self.higher_is_better else theirs / ours


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def reading(advantage: float | None) -> str:
    if advantage is None:
        return "—"
    if advantage >= 1:
        return f"ahead {advantage:.2f}x"
    mark = " ⚠" if advantage < TRAILING else ""
    return f"behind {1 / advantage:.2f}x{mark}"


def table(rows: list[Row]) -> str:
    lines = [
        "| # | workload | payload | unit | logstore | peer | peer's figure | logstore/peer "
        "| logstore is |",
        "|---|---|---|---|---:|---|---:|---:|---|",
    ]
    for row in rows:
        ours = row.median(LOGSTORE)
        ours_text = fmt(ours, row.unit) if ours is not None else _why(row, LOGSTORE)
        for peer in row.peers:
            theirs = row.median(peer)
            ratio = f"{ours / theirs:.2f}" if ours and theirs else "—"
            theirs_text = fmt(theirs, row.unit) if theirs is not None else _why(row, peer)
            lines.append(
                f"| {row.key} | {row.title} | {size_label(row.size)} | {row.unit} | "
                f"{ours_text} | {peer} | {theirs_text} | {ratio} | "
                f"{reading(row.advantage(peer))} |"
            )
    return "\n".join(lines)


def targets(rows: list[Row]) -> list[str]:
    """Issue #10's targets for row 6, one line each: logstore's figure, the verdict, and the
    peers' figures of the same run."""
    lines = []
    for row in rows:
        limit = LATENCY_TARGETS_MS.get(row.key)
        if limit is None:
            continue
        ours = row.median(LOGSTORE)
        verdict = "no figure" if ours is None else "met" if ours <= limit else "MISSED"
        peers = "; ".join(f"{peer} {_figure(row, peer)}" for peer in row.peers)
        lines.append(
            f"- row {row.key}, {size_label(row.size)}: logstore {_figure(row, LOGSTORE)}, "
            f"target <= {limit} ms: **{verdict}** (same run: {peers})"
        )
    return lines


def _figure(row: Row, system: str) -> str:
    """`system`'s median with its unit, or why it has none."""
    value = row.median(system)
    return f"{fmt(value, row.unit)} {row.unit}" if value is not None else _why(row, system)


def _why(row: Row, system: str) -> str:
    """A table cell for a missing figure: the word; the reason is listed below the table."""
    return row.problems.get(system, "—").split(":", 1)[0]


def problems(rows: list[Row]) -> list[str]:
    """One line per row and system that failed (skips are listed once, with the systems)."""
    return [
        f"- row {row.key}, {size_label(row.size)}, {system}: {why}"
        for row in rows
        for system, why in row.problems.items()
        if not why.startswith("skipped")
    ]


def runs(rows: list[Row]) -> str:
    """Every run's figure, so the spread behind each median is visible, and the CPU used:
    a side near 1.0 core was the bottleneck; both low means waiting (fsync, round trips).
    """
    lines = [
        "| # | payload | system | runs (in order) | server CPU | load CPU |",
        "|---|---|---|---|---:|---:|",
    ]
    for row in rows:
        for system, values in row.samples.items():
            text = ", ".join(fmt(v, row.unit) for v in values)
            server, load = (statistics.median(c) for c in zip(*row.cpu[system], strict=True))
            server_text = f"{server:.2f}" if server > 0 else "—"
            lines.append(
                f"| {row.key} | {size_label(row.size)} | {system} | {text} | {server_text} "
                f"| {load:.2f} |"
            )
    return "\n".join(lines)


def trailing(rows: list[Row]) -> list[tuple[Row, str, float]]:
    """(row, peer, advantage) wherever logstore trails that peer by more than 20%."""
    return [
        (row, peer, adv)
        for row in rows
        for peer in row.peers
        if (adv := row.advantage(peer)) is not None and adv < TRAILING
    ]


def chart(rows: list[Row], path: str, title: str) -> str | None:
    """Write the bar chart of advantages to `path`; None, or why it could not be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no chart"
    bars = [
        (f"{row.key} {row.title}, {size_label(row.size)} vs {peer}", adv)
        for row in rows
        for peer in row.peers
        if (adv := row.advantage(peer)) is not None
    ]
    if not bars:
        return "no row has both a logstore and a peer figure: no chart"
    labels, values = zip(*reversed(bars), strict=True)
    fig, ax = plt.subplots(figsize=(11, 0.28 * len(bars) + 1.6))
    colours = ["#2e7d32" if v >= 1 else "#c62828" if v < TRAILING else "#f9a825" for v in values]
    ax.barh(range(len(values)), values, color=colours)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.set_xlabel("logstore advantage (x, log scale): right of 1 = logstore ahead")
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f}x", va="center", fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def document(
    rows: list[Row],
    scale: Scale,
    systems: Systems,
    command: str,
    machine: dict[str, str],
    seconds: float,
    no_chart: str | None,
) -> str:
    """RESULTS.md: how it was made, on what, with which settings; the table; every run."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    chart_note = (
        f"No chart: {no_chart}."
        if no_chart
        else "Chart: [results.png](results.png) (logstore's advantage per row: right of 1 is "
        "ahead)."
    )
    out = [
        "# logstore compared with Redis Streams, NATS JetStream and embedded queues",
        "",
        f"Made by `{command}` on {when}; the run took {seconds / 60:.1f} minutes. Each "
        f"figure is the median of {scale.repeats} runs, alternating between the "
        f"systems. {chart_note} `logstore/peer` is the ratio of the medians; for latency "
        "(ms) lower is better, so there a ratio below 1 is logstore ahead. ⚠ marks a row "
        "where logstore trails by more than 20%.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in machine.items()],
        "",
        "## Systems",
        "",
        *[f"- {name}: {version}" for name, version in systems.versions.items()],
        *[f"- {name}: **skipped**: {why}" for name, why in systems.skipped.items()],
        "",
        "| system and rows | settings |",
        "|---|---|",
        *[
            f"| {who} | {'; '.join(f'{k}: {v}' for k, v in s.items())} |"
            for who, s in systems.settings.items()
        ],
        "",
        "## Results",
        "",
        table(rows),
        "",
        *(["Failed measurements:", "", *problems(rows), ""] if problems(rows) else []),
        *(
            [
                "## Targets",
                "",
                "Issue #10's targets for row 6 (publish to delivery, one waiting consumer, "
                "logstore at fsync interval), against logstore's median:",
                "",
                *targets(rows),
                "",
            ]
            if targets(rows)
            else []
        ),
        "## Workloads",
        "",
        "Every client is Python (asyncio); each server runs in its own process, the load in "
        "the runner's. Payloads are ASCII (a sequence number, then filler), the same bytes "
        "for every system.",
        "",
        "1. One client publishes one message per request and waits for the answer, which "
        "comes after the fsync.",
        f"2. {CLIENTS} clients, each with its own connection, do the same at once: group "
        "commit should pay here.",
        f"3. One client publishes {BATCH:,} messages per request (logstore: one JSON batch; "
        f"Redis: a pipeline of XADD; NATS: {BATCH:,} async publishes, then all acks).",
        f"4. {scale.replay_msgs:,} messages are preloaded, then read from the first "
        "(logstore: GET pages of 10,000; Redis: XRANGE pages of 10,000; NATS: an ordered "
        "push consumer).",
        f"5. A new durable consumer on that data takes up to {scale.consume_msgs:,} "
        f"messages, {BATCH:,} at a time, acknowledging each batch (logstore: poll + ack "
        "up_to; Redis: XREADGROUP + XACK of the ids; NATS: push consumer, max_ack_pending "
        f"{BATCH:,}, AckAll of each batch's last message, confirmed).",
        "6. A consumer waits (logstore: GET with wait; Redis: XREAD BLOCK; NATS: ordered "
        "push consumer); one message at a time is published, 2 ms after the previous "
        f"arrived; up to {scale.latency_samples:,} messages per run.",
        f"7. In-process: {scale.embedded_msgs:,} puts one at a time, then gets one at a "
        "time, each marking its message consumed (see the settings above), so every queue "
        "is drained from the same depth.",
        f"8. On a 3-node NATS JetStream cluster (loopback, 3 replicas, sync_interval always): "
        "the library `Store` against nats-py using the same JetStream primitives directly "
        f"(see the settings above): publish in atomic batches of {BATCH:,}, replay of the "
        f"preloaded {scale.replay_msgs:,} messages in pages of 10,000, consume + ack "
        f"{BATCH:,} per poll. Here the 'behind' figure is the facade's overhead (target: "
        "at most 1.3x).",
        "",
        "Limits per run: "
        f"{scale.seconds:g} s or {scale.publish_msgs:,} messages for rows 1-3, "
        f"{scale.seconds:g} s for each half of row 7, {scale.slow_seconds:g} s for rows 4-6.",
        "",
        "## Every run",
        "",
        runs(rows),
        "",
    ]
    trails = trailing(rows)
    if trails:
        out += [
            "## Where logstore trails by more than 20%",
            "",
            "Profile logstore on one of these with "
            "`python bench/compare_profile.py ROW --size BYTES` (py-spy).",
            "",
        ]
        out += [
            f"- row {row.key}, {size_label(row.size)}, vs {peer}: {1 / adv:.2f}x behind"
            for row, peer, adv in trails
        ]
        out.append("")
    return "\n".join(out)
