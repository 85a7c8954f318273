"""What the command line shows people: tables on stdout, progress bars on stderr (`rich`).

Progress is drawn only when stderr is a terminal, so scripts, pipes and logs never get it.
Tables have no borders: one row per line, columns separated by spaces and never wrapped or
cut, whatever stdout is, so `awk` and `cut` keep working on them. `rich` is imported only
when a table or a bar is shown, so other commands start without it.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

_REFRESH_SECONDS = 0.1
_WIDE = 1 << 16  # a console width no table reaches: rows never wrap when not a terminal


def print_table(rows: list[dict], columns: list[str]) -> None:
    """Print `rows` (dicts) as a table of `columns`; None shows as "-", numbers on the right."""
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        numeric = bool(rows) and all(isinstance(r[column], int | float) for r in rows)
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(*("-" if row[c] is None else str(row[c]) for c in columns))
    terminal = sys.stdout.isatty()
    console = Console(markup=False, highlight=False, width=None if terminal else _WIDE)
    console.print(table, crop=False, overflow="ignore")


class Progress:
    """Progress bars of long work on stderr, one per phase; nothing unless it is a terminal.

    `update(phase, done, total)` may be called as often as wanted: the bar is redrawn at most
    every 0.1 s (a call costs a clock read), and the last values are drawn on exit. `unit` is
    "bytes" (sizes and speeds) or a word counted ("messages"). A total of None draws a bar
    with no end (a pipe of unknown length, a followed topic). `enabled=False` draws nothing
    (the work's own output goes to the same terminal).
    """

    def __init__(self, unit: str = "bytes", *, enabled: bool = True):
        self._unit = unit
        self._enabled = enabled
        self._bar = None
        self._tasks: dict[str, int] = {}
        self._latest: dict[str, tuple[int, int | None]] = {}
        self._drawn = 0.0

    def __enter__(self) -> Progress:
        if self._enabled and sys.stderr.isatty():
            self._bar = self._make_bar()
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._draw()
            self._bar.stop()

    def update(self, phase: str, done: int, total: int | None = None) -> None:
        if self._bar is None:
            return
        self._latest[phase] = (done, total)
        now = time.monotonic()
        if now - self._drawn >= _REFRESH_SECONDS:
            self._drawn = now
            self._draw()

    def _draw(self) -> None:
        for phase, (done, total) in self._latest.items():
            task = self._tasks.get(phase)
            if task is None:
                task = self._tasks[phase] = self._bar.add_task(phase, total=total)
            self._bar.update(task, completed=done, total=total)

    def _make_bar(self):
        from rich import progress as bars
        from rich.console import Console

        if self._unit == "bytes":
            counted = [bars.DownloadColumn(), bars.TransferSpeedColumn()]
        else:
            counted = [bars.MofNCompleteColumn(), bars.TextColumn(self._unit)]
        return bars.Progress(
            bars.TextColumn("{task.description}"),
            bars.BarColumn(),
            *counted,
            bars.TimeRemainingColumn(),
            console=Console(stderr=True),
            # Lines printed meanwhile go above the bar when stdout is a terminal too; else
            # (a pipe, a file) they go where they were sent.
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=False,
        )
