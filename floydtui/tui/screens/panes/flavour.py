"""Step 1: the five flavours side by side; the guide's notes on the one under the cursor."""

from __future__ import annotations

from typing import Iterable

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

from floydtui.config.flavours import FLAVOURS, TEXT_ENCODER_PARAMS, Flavour, builtin_label, stage_name, stage_numeral
from floydtui.tui.screens.panes.base import PresetChanged, WizardPane


class FlavourCard(Widget, can_focus=True):
    """One flavour; Enter, Space or a click chooses it."""

    BINDINGS = [
        Binding("enter,space", "choose", "Choose", show=True),
        Binding("left", "app.focus_previous", "Previous", show=False),
        Binding("right", "app.focus_next", "Next", show=False),
    ]

    class Chosen(Message):
        def __init__(self, flavour: Flavour) -> None:
            super().__init__()
            self.flavour = flavour

    class Highlighted(Message):
        def __init__(self, flavour: Flavour) -> None:
            super().__init__()
            self.flavour = flavour

    def __init__(self, flavour: Flavour) -> None:
        super().__init__(id=f"card-{flavour.name.replace('.', '_')}", classes="flavour-card")
        self.flavour = flavour

    def render(self) -> Text:
        f = self.flavour
        room = self.content_size.width
        text = Text()
        # A narrow card drops the size suffix (it is on the next line) rather than wrap the name.
        text.append((f.name if room >= len(f.name) else f.name.rsplit("-", 1)[0]) + "\n", style="bold")
        stage = f"Stage {stage_numeral(f.stage)}"
        wide_line = f"{stage} · {f.params_label}"
        text.append((wide_line if room >= len(wide_line) else f"{stage}\n{f.params_label}") + "\n")
        size = f"{f.native_resolution}px" if f.stage == 1 else f"64→{f.native_resolution}px"
        text.append(size)
        if room >= 24:  # wide enough for the purpose too; narrow cards leave it to the notes below
            text.append("\n" + f.summary, style="italic")
        return text

    def action_choose(self) -> None:
        self.post_message(self.Chosen(self.flavour))

    def on_click(self) -> None:
        self.post_message(self.Chosen(self.flavour))

    def on_focus(self) -> None:
        self.post_message(self.Highlighted(self.flavour))


class FlavourPane(WizardPane):
    """The five flavours, the chosen one marked."""

    KEYS = ("model_flavour",)

    def build(self) -> Iterable[Widget]:
        with_cards = Horizontal(*(FlavourCard(f) for f in FLAVOURS.values()), id="flavour-cards")
        yield VerticalScroll(with_cards, Static(id="flavour-notes"), id="flavour-body")

    @property
    def notes_view(self) -> Static:
        return self.query_one("#flavour-notes", Static)

    def state_changed(self) -> None:
        chosen = self.state.flavour
        for card in self.query(FlavourCard):
            card.set_class(card.flavour.name == chosen, "-chosen")
        focused = self.app.focused
        shown = focused.flavour if isinstance(focused, FlavourCard) else FLAVOURS[chosen]
        self.show_notes(shown)

    def show_notes(self, f: Flavour) -> None:
        chosen = f.name == self.state.flavour
        text = Text()
        text.append(f"{f.name} ", style="bold")
        text.append(" (chosen)\n" if chosen else " (Enter or click to choose)\n", style="dim")
        text.append(f"{f.summary}\n")
        base = str(self.state.resolved("model", "pretrained_model_name_or_path"))
        if chosen and builtin_label(base):
            text.append(f"Base model: {base}, {builtin_label(base)}; set in Training (the flavour's hub model is "
                        f"{f.hub_id})\n", style="dim")
        else:
            text.append(f"Hub: {f.hub_id} (the base model; another one is set in Training) · text encoder T5 v1.1 "
                        f"XXL ({TEXT_ENCODER_PARAMS / 1e9:.1f}B), prompts of at most 77 tokens\n", style="dim")
        for note in f.notes:
            text.append(f" • {note}\n")
        self.notes_view.update(text)

    def take_cursor(self) -> None:
        """Put the cursor on the chosen flavour's card."""
        for card in self.query(FlavourCard):
            if card.flavour.name == self.state.flavour:
                card.focus()

    @on(FlavourCard.Chosen)
    def _chosen(self, event: FlavourCard.Chosen) -> None:
        self.state.set_flavour(event.flavour.name)
        self.post_message(PresetChanged(self))
        self.notify(f"Flavour: {event.flavour.name} ({stage_name(event.flavour.stage)})", timeout=2)

    @on(FlavourCard.Highlighted)
    def _highlighted(self, event: FlavourCard.Highlighted) -> None:
        self.show_notes(event.flavour)
