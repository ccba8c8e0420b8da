"""The loss series behind the monitor's plot: raw values, an EMA, and a min/max downsample.

A run can log 100,000 steps; the plot is a few hundred cells wide. `downsample` keeps the
minimum and the maximum of each bucket, in step order, so spikes survive the reduction and
a redraw costs one pass over the data, never a plot of every point.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field

EMA_ALPHA = 0.1  # about a 10-step window: smooth enough to read a trend, quick to follow it


@dataclass
class LossSeries:
    """Steps and losses as they arrive, plus their exponential moving average."""

    alpha: float = EMA_ALPHA
    steps: array = field(default_factory=lambda: array("d"))
    raw: array = field(default_factory=lambda: array("d"))
    ema: array = field(default_factory=lambda: array("d"))

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, loss: float) -> None:
        """Append a point; a step at or before the last one (a resumed run) drops the later points."""
        if not isinstance(loss, (int, float)) or not math.isfinite(loss):
            return
        if self.steps and step <= self.steps[-1]:
            self.truncate_before(step)
        # The first points average what there is, so the EMA does not start pinned to one noisy value.
        alpha = max(self.alpha, 1 / (len(self.steps) + 1))
        prev = self.ema[-1] if self.ema else loss
        self.steps.append(step)
        self.raw.append(loss)
        self.ema.append(prev + alpha * (loss - prev))

    def truncate_before(self, step: int) -> None:
        """Keep only the points before `step`: a run resumed from an earlier checkpoint."""
        keep = len(self.steps)
        while keep and self.steps[keep - 1] >= step:
            keep -= 1
        for arr in (self.steps, self.raw, self.ema):
            del arr[keep:]

    def downsample(self, width: int, series: str = "raw") -> tuple[list[float], list[float]]:
        """At most 2*width points of `series` ("raw" or "ema"): each bucket's min and max in step order."""
        values = self.raw if series == "raw" else self.ema
        n = len(values)
        if n <= 2 * max(width, 1):
            return list(self.steps), list(values)
        xs: list[float] = []
        ys: list[float] = []
        size = n / width
        for b in range(width):
            lo, hi = int(b * size), int((b + 1) * size)
            chunk = values[lo:hi]
            if not chunk:
                continue
            i_min = chunk.index(min(chunk))  # C-speed passes: 100k points redraw in milliseconds
            i_max = chunk.index(max(chunk))
            for i in sorted({i_min, i_max}):
                xs.append(self.steps[lo + i])
                ys.append(chunk[i])
        return xs, ys
