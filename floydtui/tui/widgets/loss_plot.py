"""The live loss plot: raw loss and its EMA against the step, on a linear or log axis.

Redraws are throttled and each draws at most two points per column (`LossSeries.downsample`),
so 100,000 steps plot as fast as 100.
"""

from __future__ import annotations

from textual.reactive import reactive
from textual_plotext import PlotextPlot

from floydtui.tui.lossdata import LossSeries


class LossPlot(PlotextPlot):
    """Plots a `LossSeries`; call `mark_dirty()` after adding points, `l` toggles the log axis."""

    DEFAULT_CSS = """
    LossPlot { height: 1fr; min-height: 6; }
    """

    log_scale: reactive[bool] = reactive(False)

    def __init__(self, series: LossSeries, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series = series
        self._dirty = True

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(0.3, self._redraw_if_dirty)  # at most ~3 redraws a second, however fast steps come

    def mark_dirty(self) -> None:
        self._dirty = True

    def watch_log_scale(self) -> None:
        self._dirty = True
        self._redraw_if_dirty()

    def on_resize(self) -> None:
        self._dirty = True

    def _redraw_if_dirty(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.replot()

    def replot(self) -> None:
        """Draw the series at the widget's current width."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.xlabel("step")
        plt.title("loss (raw · EMA)" + (" — log scale" if self.log_scale else ""))
        width = max(self.size.width - 10, 10)  # the y-axis labels take about ten columns
        if len(self.series):
            xs, ys = self.series.downsample(width, "raw")
            plt.plot(xs, ys, marker="braille", color="gray", label="raw")
            xs, ys = self.series.downsample(width, "ema")
            plt.plot(xs, ys, marker="braille", color="orange", label="EMA")
            if self.log_scale and min(self.series.raw) > 0:
                plt.yscale("log")
            else:
                plt.yscale("linear")
        self.refresh()
