"""Step 5: image datasets. Add, edit, remove; a live scan summary; originals beside their crops."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Input, Label, ListItem, ListView, Static

from floydtui.config.schema import DATASET_FIELD_BY_KEY
from floydtui.errors import FloydError
from floydtui.tui.screens.panes.base import PresetChanged, WizardPane
from floydtui.tui.state import DATASETS
from floydtui.tui.widgets.fields import FieldEditor

DATASET_KEYS = ("id", "instance_data_dir", "caption_strategy", "instance_prompt", "prepend_instance_prompt",
                "crop", "crop_aspect", "crop_style", "resolution", "minimum_image_size", "maximum_image_size",
                "target_downsample_size", "repeats", "num_eval_images", "disable")
PREVIEW_IMAGES = 3  # a few is enough to judge the crop; more would only slow the pane


class PreviewReady(Message):
    """Rendered original/crop pairs for the selected dataset."""

    def __init__(self, dataset_id: str, pairs: list[tuple[str, Text, Text, str]]) -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.pairs = pairs


class DatasetItem(ListItem):
    def __init__(self, index: int, ds: dict[str, Any]) -> None:
        super().__init__(Label(str(ds.get("id") or f"#{index + 1}")))
        self.index = index


class DatasetsPane(WizardPane):
    """The list of image datasets on the left, the selected one's fields, scan and preview on the right."""

    # a and Del are on the list's buttons ("Add (a)", "Remove (Del)"): the key bar keeps room for the wizard's keys
    BINDINGS = [Binding("a", "add", "Add dataset", show=False), Binding("delete", "remove", "Remove dataset", show=False),
                Binding("ctrl+g", "scan_all", "Scan all of it", show=False)]

    class FolderSettled(Message):
        """A dataset's folder was entered or left: the screen scans the datasets now."""

    class ScanAll(Message):
        """The user says this folder is the dataset: the screen scans all of it, past the bound."""

        def __init__(self, folder: Path) -> None:
            super().__init__()
            self.folder = folder

    KEYS = ("datasets",)  # the list itself: entries added and removed here
    DATASET_KEYS = DATASET_KEYS

    selected: int | None = None
    _listed: list[tuple[int, str]] | None = None  # (index, id) of the rows shown
    _filled: tuple[int, int] | None = None  # the dataset whose values the fields show

    def build(self) -> Iterable[Widget]:
        yield Horizontal(
            Vertical(
                Static("Image datasets", classes="form-group"),
                ListView(id="ds-list"),
                Button("Add (a)", id="ds-add", compact=True),
                Button("Remove (Del)", id="ds-remove", compact=True, variant="error"),
                id="ds-side",
            ),
            VerticalScroll(
                Static("No image dataset yet: press a (or Add) and give it a folder of images.", id="ds-empty",
                       classes="form-note"),
                Vertical(
                    *(FieldEditor(DATASETS, DATASET_FIELD_BY_KEY[k], None,
                                  folder_base=self.state.base_dir if k == "instance_data_dir" else None)
                      for k in DATASET_KEYS),
                    id="ds-fields",
                ),
                Static(id="ds-scan"),
                Button("Scan all of it (^g)", id="ds-scan-all", compact=True),
                Vertical(id="ds-preview"),
                id="ds-editor",
            ),
            id="ds-body",
        )

    @property
    def dataset_list(self) -> ListView:
        return self.query_one("#ds-list", ListView)

    @property
    def fields_box(self) -> Vertical:
        return self.query_one("#ds-fields", Vertical)

    @property
    def empty_note(self) -> Static:
        return self.query_one("#ds-empty", Static)

    @property
    def remove_button(self) -> Button:
        return self.query_one("#ds-remove", Button)

    @property
    def scan_view(self) -> Static:
        return self.query_one("#ds-scan", Static)

    @property
    def scan_all_button(self) -> Button:
        return self.query_one("#ds-scan-all", Button)

    @property
    def preview_box(self) -> Vertical:
        return self.query_one("#ds-preview", Vertical)

    @property
    def editor_box(self) -> VerticalScroll:
        return self.query_one("#ds-editor", VerticalScroll)

    @property
    def dataset_index(self) -> int | None:
        return self.selected

    def state_changed(self) -> None:
        indexes = self.state.image_dataset_indexes()
        if self.selected not in indexes:
            self.selected = indexes[0] if indexes else None
        listed = [(i, str(self.state.datasets[i].get("id") or f"#{i + 1}")) for i in indexes]
        if listed != self._listed:
            self._listed = listed
            self.dataset_list.clear()
            self.dataset_list.extend(DatasetItem(i, self.state.datasets[i]) for i in indexes)
            if self.selected is not None:
                self.dataset_list.index = indexes.index(self.selected)
        has = self.selected is not None
        self.fields_box.display = has
        self.empty_note.display = not has
        self.remove_button.disabled = not has
        if has and self._filled != (self.selected, id(self.state.datasets[self.selected])):
            self.fill_fields()
        if has:
            self.refresh_editors(self.selected)
            self.field_editor("num_eval_images").display = self.state.stage == 2
        self.show_scan()

    def fill_fields(self) -> None:
        """Show the selected dataset's values (the defaults where a key is not written)."""
        ds = self.state.datasets[self.selected]
        self._filled = (self.selected, id(ds))
        resolved = self._resolved_dataset()
        for ed in self.editors():
            ed.set_value(ds.get(ed.key), resolved.get(ed.key) if resolved else None)

    def _resolved_dataset(self) -> dict[str, Any] | None:
        preset = self.state.preset
        if preset is None:
            return None
        ds_id = self.state.datasets[self.selected].get("id")
        return next((d for d in preset.datasets if d["id"] == ds_id), None)

    # ---- scan and preview -----------------------------------------------
    def show_scan(self) -> None:
        """The selected dataset's scan: which folder, whether it is being scanned, then the summary."""
        out = self.scan_view
        scan_all = self.scan_all_button
        scan_all.display = False
        if self.selected is None:
            out.update("")
            return
        ds_id = self.state.datasets[self.selected].get("id")
        wizard, preset = self.wizard, self.state.preset
        scan = next((s for s in wizard.scans or [] if s.id == ds_id), None) \
            if preset is not None and wizard.scans_for is preset else None
        folder = scan.settings.folder if scan is not None else self.state.dataset_folder(self.selected)
        text = Text()
        text.append("Scan  ", style="bold")
        text.append(f"{folder}\n" if folder else "(no folder yet)\n")
        if folder is None:
            out.update(text.append("Type the folder of training images above.", style="dim"))
            return
        if preset is None:
            out.update(text.append("Waiting for the preset's errors to be fixed.", style="dim"))
            return
        if wizard.scanning is preset:
            out.update(text.append("scanning…", style="dim"))
            return
        if scan is None:
            waiting = ("not a folder (yet)" if not folder.is_dir() else
                       "scanned when you press Enter, leave the field or pause typing")
            out.update(text.append(waiting, style="dim"))
            return
        if scan.bounded is not None:
            text.append(scan.bound_message + "\n", style="yellow")
            text.append("Correct the folder above, or press ctrl+g to scan all of it.", style="dim")
            out.update(text)
            scan_all.display = True
            self.preview_box.remove_children()
            return
        for line in scan.summary_lines()[2:]:
            text.append(line.strip() + "\n")
        for p in scan.problems:
            text.append(f"{p.message}\n", style="red" if p.is_error else "yellow")
            if p.hint:
                text.append(f"  fix: {p.hint}\n", style="dim")
        out.update(text)
        usable = [r.path for r in scan.usable[:PREVIEW_IMAGES]]
        if usable:
            self.render_preview(self.state.preset, ds_id, usable, self.preview_width())
        else:
            self.preview_box.remove_children()

    def preview_width(self) -> int:
        """Cells for each image of a pair."""
        return max(8, min(32, (self.editor_box.size.width - 6) // 2))

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def render_preview(self, preset, dataset_id: str, paths: list, width: int) -> None:
        """Load and render the pairs off the UI thread."""
        from floydtui.data.preview import preview_pair
        from floydtui.preview import render

        colour = not self.app.no_color
        pairs = []
        for path in paths:
            try:
                original, trained = preview_pair(preset, dataset_id, path)
            except FloydError:
                continue  # the file changed since the scan; the next scan shows why
            caption = f"{original.width}x{original.height} → {trained.width}x{trained.height}"
            shown = [render(im, width, width // 2, colour) for im in (original, trained)]
            as_text = [x if isinstance(x, Text) else Text(x) for x in shown]  # ASCII comes back as a str
            pairs.append((str(path), as_text[0], as_text[1], caption))
        self.post_message(PreviewReady(dataset_id, pairs))

    @on(PreviewReady)
    def _show_preview(self, event: PreviewReady) -> None:
        box = self.preview_box
        box.remove_children()
        if not event.pairs:
            return
        widgets: list[Widget] = [Static("Preview: the original, and what training sees", classes="form-group")]
        for path, original, trained, caption in event.pairs:
            name = path.rsplit("/", 1)[-1]
            widgets.append(Static(Text(f"{name}  {caption}", style="dim"), markup=False))
            widgets.append(Horizontal(Static(original, classes="preview-image"),
                                      Static(trained, classes="preview-image"), classes="preview-pair"))
        box.mount_all(widgets)

    # ---- actions --------------------------------------------------------
    def action_scan_all(self) -> None:
        """Scan the selected dataset's folder past the bound: the user says it is the dataset."""
        if self.selected is None or self.state.preset is None:
            return
        scan = next((s for s in self.wizard.scans or [] if s.id == self.state.datasets[self.selected].get("id")),
                    None)
        if scan is not None and scan.bounded is not None:
            self.post_message(self.ScanAll(scan.settings.folder))

    @on(Button.Pressed, "#ds-scan-all")
    def _scan_all_pressed(self) -> None:
        self.action_scan_all()

    @on(Input.Submitted, "#field-instance_data_dir Input")
    @on(Input.Blurred, "#field-instance_data_dir Input")
    def _folder_settled(self) -> None:
        """Enter, or leaving the field: the folder is settled, scan it now."""
        self.post_message(self.FolderSettled())

    def action_add(self) -> None:
        """A new dataset with the guide's values; the cursor goes to its folder."""
        self.selected = self.state.add_dataset()
        self.post_message(PresetChanged(self))
        self.call_after_refresh(lambda: self.field_editor("instance_data_dir").editor.focus())

    def action_remove(self) -> None:
        if self.selected is None:
            return
        removed = self.state.datasets[self.selected].get("id")
        self.state.remove_dataset(self.selected)
        self.selected = None
        self.notify(f"Removed dataset {removed}", timeout=2)
        self.post_message(PresetChanged(self))

    @on(Button.Pressed, "#ds-add")
    def _add_pressed(self) -> None:
        self.action_add()

    @on(Button.Pressed, "#ds-remove")
    def _remove_pressed(self) -> None:
        self.action_remove()

    @on(ListView.Highlighted, "#ds-list")
    def _picked(self, event: ListView.Highlighted) -> None:
        if isinstance(event.item, DatasetItem) and event.item.index != self.selected:
            self.selected = event.item.index
            self.state_changed()
