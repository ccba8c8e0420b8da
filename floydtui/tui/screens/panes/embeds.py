"""Step 6: the text-embed cache: where it goes, how many prompts, its size on disk and the time."""

from __future__ import annotations

from typing import Iterable

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from floydtui.config.schema import DATASET_FIELD_BY_KEY
from floydtui.tui.runstate import format_duration
from floydtui.tui.screens.panes.base import WizardPane
from floydtui.tui.state import DATASETS
from floydtui.tui.widgets.fields import FieldEditor

GUIDE_NOTE = ("The guide: DeepFloyd's text embeds are ENORMOUS (megabytes each, vs hundreds of KB for SDXL) "
              "and SLOW to create (9-10 a second on an A6000). They are made once, before training, "
              "and reused by every run that shares the folder.")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class EmbedsPane(WizardPane):
    """The cache folder, the encoder's placement, and the estimate with its basis."""

    KEYS = ("text_encoder_placement", "embed_batch_size", "clean_caption")
    DATASET_KEYS = ("cache_dir",)  # the text_embeds dataset's

    def build(self) -> Iterable[Widget]:
        index = self.state.text_embeds_index()
        yield VerticalScroll(
            Static(GUIDE_NOTE, classes="form-note"),
            FieldEditor(DATASETS, DATASET_FIELD_BY_KEY["cache_dir"], self.state.get(DATASETS, "cache_dir", index),
                        folder_base=self.state.base_dir, label="cache_dir (text_embeds)"),
            *(self.table_editor(key) for key in self.KEYS),
            Static(id="embeds-estimate"),
            id="embeds-body",
        )

    @property
    def dataset_index(self) -> int | None:
        return self.state.text_embeds_index()

    @property
    def estimate_view(self) -> Static:
        return self.query_one("#embeds-estimate", Static)

    def state_changed(self) -> None:
        self.refresh_editors(self.dataset_index)
        out = self.estimate_view
        scans = self.wizard.scans
        if scans is None:
            out.update(Text("Counting captions…", style="dim"))
            return
        captions = {r.caption for s in scans for r in s.usable if r.caption is not None}
        report = self.wizard.hardware
        device = report.memory.device if report is not None else None
        on_gpu = device is not None and device.is_gpu
        est = self.state.embed_estimate(len(captions), on_gpu)
        text = Text()
        text.append("Prompts to encode  ", style="bold")
        text.append(f"{est.prompts:,}  ({len(captions):,} unique captions, the validation prompts, "
                    "and the empty prompt)\n")
        text.append("Size on disk       ", style="bold")
        text.append(f"{human_bytes(est.total_bytes)}  ({human_bytes(est.bytes_each)} a prompt)\n")
        text.append("Time               ", style="bold")
        text.append(f"about {format_duration(est.seconds)}\n")
        text.append(f"Basis: {est.basis}.", style="dim")
        if self.state.preset is not None:
            text.append(f"\nFolder: {self.state.preset.text_embeds_cache_dir}", style="dim")
        out.update(text)
