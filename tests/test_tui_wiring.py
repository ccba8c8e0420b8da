"""The wizard's wiring: each pane declares the keys it edits and the screen derives a problem's
step from them; panes send messages up rather than call the screen; the hardware step and
`floydtui check` show one memory report."""

import ast
from pathlib import Path

import pytest
from test_tui import goto, make_images, run, settle

from floydtui.errors import Problem
from floydtui.tui.app import create_app
from floydtui.tui.screens.dialogs import PathDialog
from floydtui.tui.screens.wizard import STEPS, pane_class, pane_of

PANES = Path(__file__).resolve().parents[1] / "floydtui" / "tui" / "screens" / "panes"


@pytest.mark.parametrize("where, key, step", [
    ("p [model]", "model_flavour", "flavour"),
    ("p [training]", "resolution", "training"),
    ("p [[datasets]] 'a'", "resolution", "datasets"),  # the dataset's own resolution, at its field
    ("p [validation]", "num_eval_images", "validation"),
    ("p [[datasets]] 'a'", "num_eval_images", "datasets"),
    ("p [output]", "report_to", "training"),  # the training form edits it
    ("p", "validation_prompts", "validation"),
    ("p", "id", "datasets"),  # two datasets sharing an id
    ("p", "datasets", "datasets"),
    ("p [[datasets]] 'te'", "cache_dir", "embeds"),
    ("p [[datasets]] 'a'", "train_batch_size", "training"),  # only the training form has the key
    ("p [[datasets]] #1", "no_such_key", "datasets"),
    ("p", "no_such_key", "review"),
])
def test_a_problem_goes_to_the_step_whose_pane_declares_its_key(where, key, step):
    assert pane_of(Problem("x", where=where, key=key)) == step


def test_each_pane_declares_the_keys_of_the_fields_it_builds():
    """The declarations are what the forms edit: every key a pane builds a row for is declared."""
    from floydtui.tui.screens.panes.datasets import DATASET_KEYS
    from floydtui.tui.screens.panes.forms import TRAINING_GROUPS, VALIDATION_KEYS

    assert set(pane_class("training").KEYS) == {k for _, keys in TRAINING_GROUPS for k in keys}
    assert set(VALIDATION_KEYS) < set(pane_class("validation").KEYS)
    assert pane_class("datasets").DATASET_KEYS == DATASET_KEYS
    declared = [k for step, _, _ in STEPS for k in pane_class(step).KEYS]
    assert len(declared) == len(set(declared)), "a top-level key belongs to one step"


def test_panes_never_call_the_screen():
    """Panes read the screen's shared state, but ask it to act only by posting messages."""
    calls = []
    for path in sorted(PANES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = ast.unparse(node.func.value)
                if target in ("self.wizard", "self.screen", "self.app.screen", "self.parent"):
                    calls.append(f"{path.name}:{node.lineno} {ast.unparse(node.func)}()")
    assert not calls, calls


def test_the_hardware_step_draws_the_report_check_prints(monkeypatch):
    """One report, two faces: the step's numbers are check's, for a card the preset does not fit."""
    from floydtui.config.preset import preset_from_dict
    from floydtui.hardware.estimate import gib
    from floydtui.hardware.report import check_memory
    from floydtui.tui.screens.panes.hardware import hardware_report

    monkeypatch.setenv("FLOYDTUI_ASSUME_GPU", "RTX 3060:12288")
    preset = preset_from_dict({"model": {"model_flavour": "i-xlarge-4.3b"},
                               "datasets": [{"id": "images", "instance_data_dir": "."}]})
    shown = hardware_report(preset).memory
    section = check_memory(preset).section()
    assert shown.verdict == section.data["verdict"] == "does_not_fit"
    assert [a.change for a in shown.advice] == [a["change"] for a in section.data["advice"]]
    assert shown.estimate.peak_mib == section.data["estimate"]["peak_mib"]
    assert any(f"peak {gib(shown.estimate.peak_mib)}" in line for line in section.lines)


def test_the_review_buttons_ask_the_screen(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "imgs", n=4, size=(64, 64))
    preset = tmp_path / "mine.toml"
    preset.write_text('[model]\nmodel_flavour = "i-medium-400m"\npretrained_model_name_or_path = "builtin:tiny-if-i"\n'
                      '\n[[datasets]]\nid = "imgs"\ninstance_data_dir = "imgs"\n')
    app = create_app(preset)

    async def test(pilot):
        await goto(pilot, "review")
        await settle(pilot, 5)
        assert not app.screen.pane("review").save_button.disabled  # the preset loads
        app.screen.state.set("training", "lora_rank", 8)
        await pilot.click("#review-save")
        await settle(pilot)
        assert "lora_rank = 8" in preset.read_text()
        await pilot.click("#review-export")
        await pilot.pause()
        assert isinstance(app.screen, PathDialog) and app.screen.ok_label == "Export"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, PathDialog)

    run(app, test, size=(120, 40))


def test_the_screen_handles_each_message_a_pane_sends_up():
    """The screen handles the panes' messages by name (their modules load late): a renamed message
    would otherwise go unheard."""
    from floydtui.tui.screens.panes.datasets import DatasetsPane
    from floydtui.tui.screens.panes.hardware import HardwareReport
    from floydtui.tui.screens.panes.review import ReviewPane
    from floydtui.tui.screens.wizard import WizardScreen

    for message in (DatasetsPane.FolderSettled, DatasetsPane.ScanAll, ReviewPane.Requested, HardwareReport):
        assert callable(getattr(WizardScreen, message.handler_name, None)), message.handler_name
