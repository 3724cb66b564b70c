"""The one progress line of a campaign, fitted to the terminal's width: on a terminal it is
redrawn in place twice a second, otherwise (a log, CI) printed every 10 seconds."""
from __future__ import annotations

import shutil
import time

from .config import CampaignConfig


def mmss(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def progress_line(total: dict, elapsed: float, budget: float, width: int) -> str:
    """The most important parts first; the others are dropped until the line fits `width`."""
    from ..strategies import TOKEN_COUNT_BUCKETS

    rate = total["cases"] / elapsed if elapsed > 0 else 0.0
    shrinking = sum(1 for p in total["phases"].values() if p.startswith("shrink"))
    failures = f"{len(total['found'])} new failure(s)"
    if shrinking:
        failures += f", {shrinking} minimising"
    extra = []
    if total["shrink_steps"]:
        extra.append(f"+{total['shrink_steps']} shrink")
    if total["replays"]:
        extra.append(f"+{total['replays']} replay")
    cases = f"{total['cases']} cases {rate:.1f}/s" + (f" ({', '.join(extra)})" if extra else "")
    buckets = "tok " + " ".join(f"{b}:{total['token_buckets'].get(b, 0)}" for b in TOKEN_COUNT_BUCKETS)
    threads = "thr " + " ".join(f"{t}:{n}" for t, n in sorted(total["threads"].items(), key=lambda kv: int(kv[0])))
    parts = [f"[{mmss(elapsed)}/{mmss(budget)}]", cases, failures, buckets, threads]
    line = parts[0]
    for part in parts[1:]:
        candidate = f"{line} | {part}"
        if len(candidate) > width:
            break
        line = candidate
    return line[:width]


class Progress:
    def __init__(self, cfg: CampaignConfig, stream):
        self.cfg = cfg
        self.stream = stream
        self.interactive = hasattr(stream, "isatty") and stream.isatty()
        self.last_print = 0.0

    def width(self) -> int:
        return max(20, shutil.get_terminal_size((80, 24)).columns - 1)

    def _write(self, text: str) -> None:
        """A closed stream (`fuzz ... | head`) stops the progress display, not the campaign."""
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None

    def update(self, total: dict) -> None:
        now = time.time()
        line = progress_line(total, now - self.cfg.start, self.cfg.budget, self.width())
        if self.interactive:
            self._write("\r\033[K" + line)
        elif now - self.last_print >= 10:
            self._write(line + "\n")
            self.last_print = now

    def finish(self, total: dict) -> None:
        line = progress_line(total, time.time() - self.cfg.start, self.cfg.budget, self.width())
        self._write(("\r\033[K" if self.interactive else "") + line + "\n")
