"""Progress of long commands: a tqdm bar for people, or one JSON line per update for programs.

The Slicer module runs the engine's commands in a background process and reads the lines
(`--progress lines`), so it never has to parse a progress bar meant for eyes.
"""

from __future__ import annotations

import json
import sys

LINE_PREFIX = "collagan-progress "


class ProgressReporter:
    """`update(done, total, **info)` as a tqdm bar on stderr, or as JSON lines on stdout.

    The bar appears at the first update, so a command that fails while checking its input prints
    only its error. `start` is where resumed work begins, so the rate and time left count only what
    this run does.
    """

    def __init__(self, stage: str, total: int = 0, *, lines: bool = False, unit: str = "step", start: int = 0) -> None:
        self.stage, self.lines, self.total, self.unit, self.start = stage, lines, total, unit, start
        self._bar = None

    def update(self, done: int, total: int | None = None, **info: float) -> None:
        if self.lines:
            record = {"stage": self.stage, "done": done, "total": total if total is not None else self.total, **info}
            print(LINE_PREFIX + json.dumps(record), flush=True)
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total or self.total, initial=self.start, desc=self.stage, unit=self.unit, dynamic_ncols=True,
                             file=sys.stderr)
        if total is not None:
            self._bar.total = total
        self._bar.n = done
        if info:
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in info.items()}, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def parse_progress_line(line: str) -> dict | None:
    """The record of a progress line, or None for any other output."""
    if not line.startswith(LINE_PREFIX):
        return None
    try:
        return json.loads(line[len(LINE_PREFIX):])
    except json.JSONDecodeError:
        return None
