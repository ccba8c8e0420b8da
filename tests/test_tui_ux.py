"""The wizard and the monitor as a user lives in them (issue 15): Pilot at the sizes people use."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from helpers import WAIT_S, spawn, until
from helpers import wait_for as wait_until
from PIL import Image

from floydtui.tui.app import create_app
from floydtui.tui.screens.wizard import STEPS, ScanStarted

SIZES = [(80, 24), (100, 30)]


def run(app, test, size=(100, 30), hook=None):
    """Run `test(pilot)` inside the app, headless; `hook` sees every message."""
    async def main():
        async with app.run_test(size=size, notifications=True, message_hook=hook) as pilot:
            await pilot.pause()
            await test(pilot)
    asyncio.run(main())


async def wait_for(pilot, condition, what: str, seen=None):
    """Pause until `condition()` holds; fail naming what was awaited and what was seen (helpers.until)."""
    return await until(pilot, condition, what=what, seen=seen)


async def goto(pilot, step):
    order = [s for s, _, _ in STEPS]
    while pilot.app.screen.current_step != step:
        await pilot.press("ctrl+n" if order.index(step) > order.index(pilot.app.screen.current_step) else "ctrl+p")
    await pilot.pause()


def plain(content) -> str:
    from rich.console import Console
    console = Console(width=300, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(content)
    return console.export_text()


def panel(app) -> str:
    return plain(app.screen.query_one("#ds-scan").content)


@pytest.fixture(autouse=True)
def _no_blink(monkeypatch):
    from textual.widgets import Input
    monkeypatch.setattr(Input, "cursor_blink", False, raising=False)


def images(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (96, 96), (50 * i, 120, 200)).save(folder / f"a_shape_{i}.png")
    return folder


async def add_dataset(pilot):
    await goto(pilot, "datasets")
    await pilot.click("#ds-add")
    await pilot.pause()
    folder = pilot.app.screen.query_one("#field-instance_data_dir")
    assert pilot.app.focused is folder.editor
    return folder


def scanned_current(app) -> bool:
    wizard = app.screen
    return wizard.state.preset is not None and wizard.scans_for is wizard.state.preset and wizard.scanning is None


def test_typing_slash_then_a_folder_scans_only_the_folder(tmp_path, monkeypatch):
    # Keys reach the app at the machine's pace: a settle time longer than any gap between them keeps
    # the test about the rule (prefixes are not scanned while typing), not about this machine's speed.
    monkeypatch.setattr("floydtui.tui.screens.wizard.FOLDER_SETTLE_S", 60.0)
    real = images(tmp_path / "photos" / "set")
    started: dict[int, list[Path]] = {}

    def hook(message):  # a message that bubbles is seen by each node it reaches: keyed by identity
        if isinstance(message, ScanStarted):
            started[id(message)] = list(message.folders)
    app = create_app()

    async def test(pilot):
        await add_dataset(pilot)
        await pilot.press("/")
        await pilot.pause(0.1)  # a short pause after "/": shorter than a settled folder's
        await pilot.press(*str(real)[1:])
        assert "scanned when you press Enter" in panel(app), panel(app)
        assert started == {} or not any(started.values()), f"a prefix was scanned: {started}"
        await pilot.press("enter")
        await wait_for(pilot, lambda: scanned_current(app), "the scan of the typed folder", seen=lambda: panel(app))
        assert [f for f in started.values() if f] == [[real]], started
        text = panel(app)
        assert f"Scan  {real}" in text and "4 files: 4 usable" in text

    run(app, test, hook=hook)


def test_enter_scans_at_once_and_the_next_edit_cancels(tmp_path, monkeypatch):
    real = images(tmp_path / "photos")
    app = create_app()

    async def test(pilot):
        folder = await add_dataset(pilot)
        folder.editor.value = str(real)  # one edit to a folder, then a pause: scanned without Enter
        await wait_for(pilot, lambda: scanned_current(app), "the scan after a pause", seen=lambda: panel(app))
        folder.editor.value = str(real / "a_shape_0.png")  # a file, not a folder: never scanned
        await wait_for(pilot, lambda: "not a folder (yet)" in panel(app), "the file to be called not a folder",
                       seen=lambda: panel(app))
        folder.editor.value = str(real)
        await pilot.press("enter")
        await pilot.pause()
        wizard = app.screen
        assert wizard.scanning is not None or scanned_current(app), "Enter starts the scan without waiting"
        await wait_for(pilot, lambda: scanned_current(app), "the scan after Enter", seen=lambda: panel(app))
        # The next edit's own scan waits for the folder to settle: long enough here that the test sees the
        # moment between the edit and that scan at any machine speed (on a busy one the poll missed it).
        monkeypatch.setattr("floydtui.tui.screens.wizard.FOLDER_SETTLE_S", 3600.0)
        scanned = wizard.state.preset
        await pilot.press("/")  # the path now ends in "/": a new preset, the old scan is stale
        await wait_for(pilot, lambda: wizard.state.preset is not scanned, "the edit to make a new preset")
        assert wizard.scans_for is not wizard.state.preset and wizard.scanning is None
        assert "4 files" not in panel(app), "the panel never shows numbers for another version"

    run(app, test)


def test_a_folder_of_25000_files_stops_at_the_bound_and_scans_on_when_asked(tmp_path):
    huge = tmp_path / "everything"
    huge.mkdir()
    for i in range(25_000):
        (huge / f"{i:05d}.png").touch()
    app = create_app()

    async def test(pilot):
        folder = await add_dataset(pilot)
        folder.editor.value = str(huge)
        await pilot.press("enter")
        await wait_for(pilot, lambda: scanned_current(app), "the bounded scan", seen=lambda: panel(app))
        text = panel(app)
        assert f"Scan  {huge}" in text
        assert f"more than 20,000 files under {huge} — is this the dataset folder?" in text
        assert app.screen.query_one("#ds-scan-all").display
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert "scanning…" in panel(app) or scanned_current(app)
        await wait_for(pilot, lambda: scanned_current(app), "the scan past the bound", seen=lambda: panel(app))
        text = panel(app)
        assert "25000 files: 0 usable, 25000 skipped" in text and "25000 empty file" in text
        assert not app.screen.query_one("#ds-scan-all").display

    run(app, test)


def test_a_failed_check_clears_checking_and_says_why(tmp_path, monkeypatch, repo):
    import floydtui.checks

    def broken(preset, scans=None):
        raise RuntimeError("the disk went away")
    monkeypatch.setattr(floydtui.checks, "run_checks", broken)
    app = create_app(repo / "presets" / "demo.toml")

    async def test(pilot):
        await goto(pilot, "review")
        problems = app.screen.query_one("#review-problems")
        await wait_for(pilot, lambda: "failed" in plain(problems.content), "the review's failure",
                       seen=lambda: plain(problems.content))
        text = plain(problems.content)
        assert "Checking" not in text and "RuntimeError: the disk went away" in text
        assert any("the disk went away" in str(n.message) for n in app._notifications)

    run(app, test)


# ---- the monitor ------------------------------------------------------------------------------
PROMPTS = ["a red circle", "a blue square", "a green triangle"]


def recorded_run(run_dir: Path, steps=(10, 20, 30, 40, 50), model_id="builtin:tiny-if-i", end=True) -> Path:
    """A run directory as `floydtui run` leaves it: events.jsonl and validation PNGs."""
    import json
    run_dir.mkdir(parents=True, exist_ok=True)
    base = "/cache/models/tiny-if-i" if model_id.startswith("builtin:") else model_id
    events = [{"t": 1.0, "type": "run_start", "run_id": "r1", "flavour": "i-medium-400m", "base_model": base,
               "model_id": model_id, "total_steps": steps[-1], "world_size": 1, "device": "cpu"}]
    for step in steps:
        events.append({"t": 2.0 + step, "type": "step", "step": step, "epoch": 0, "loss": 1.0 / step, "lr": 1e-4,
                       "samples_per_s": 3.0, "eta_s": 1.0})
        folder = run_dir / "validation" / f"step-{step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        images = []
        for i, prompt in enumerate(PROMPTS):
            path = folder / f"{i:02d}-{prompt.replace(' ', '-')}-64x64.png"
            Image.new("RGB", (64, 64), (step * 4 % 255, 60 * i, 120)).save(path)
            images.append({"path": str(path.relative_to(run_dir)), "prompt": prompt, "width": 64, "height": 64})
        events.append({"t": 2.5 + step, "type": "validation", "step": step, "images": images})
    if end:
        events.append({"t": 100.0, "type": "run_end", "status": "completed", "lora_path": str(run_dir)})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run_dir


@pytest.mark.parametrize("model_id, shown", [
    ("builtin:tiny-if-i", "i-medium-400m · built-in tiny model (builtin:tiny-if-i) on cpu"),
    ("DeepFloyd/IF-I-M-v1.0", "i-medium-400m · DeepFloyd/IF-I-M-v1.0 on cpu"),
    ("/models/my-if", "i-medium-400m · folder /models/my-if on cpu"),
])
def test_the_monitor_names_the_model_that_trains(tmp_path, model_id, shown):
    app = create_app(run_dir=recorded_run(tmp_path / "run", steps=(10,), model_id=model_id))

    async def test(pilot):
        await wait_for(pilot, lambda: app.screen.state.status == "completed", "the recorded run's end")
        assert shown in plain(app.screen.query_one("#run-stats").content)

    run(app, test, size=(80, 24))


@pytest.mark.parametrize("size", SIZES)
def test_the_comparison_grid_pages_through_steps_and_prompts(tmp_path, size):
    from floydtui.tui.screens.compare import CompareScreen
    app = create_app(run_dir=recorded_run(tmp_path / "run", steps=tuple(range(10, 90, 10))))

    async def test(pilot):
        await wait_for(pilot, lambda: len(app.screen.state.validations) == 8, "eight validations")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), "the comparison grid")
        grid = app.screen

        def heads():
            return [plain(w.content).strip() for w in grid.query(".compare-head")]

        def labels():
            return [plain(w.content).split("\n")[0].strip() for w in grid.query(".compare-label")]
        await wait_for(pilot, lambda: len(heads()) > 1, "the grid's first page", seen=heads)
        first = heads()[1:]
        assert first[-1] == "step 80", "the newest steps first"
        assert len(first) < 8, f"at {size} not every step fits: {first}"
        assert len(grid.query(".compare-cell")) == len(first) * len(labels())
        assert "▀" in plain(grid.query(".compare-cell").first().content), "the image, drawn"
        await pilot.press("left")
        await wait_for(pilot, lambda: heads()[1:] != first, "the earlier steps", seen=heads)
        assert heads()[1] == "step 10"
        rows = labels()
        if len(rows) < len(PROMPTS):
            await pilot.press("down")
            await wait_for(pilot, lambda: labels() != rows, "the next prompts", seen=labels)
            assert labels()[-1] == PROMPTS[-1]
        else:
            assert rows == PROMPTS
        await pilot.press("escape")
        assert type(app.screen).__name__ == "MonitorScreen"

    run(app, test, size=size)


# ---- the run list ------------------------------------------------------------------------------
def test_runs_command_lists_status_step_loss_and_start(tmp_path):
    import json
    import subprocess
    import sys
    recorded_run(tmp_path / "output" / "done", steps=(10, 20))
    recorded_run(tmp_path / "output" / "project" / "cut-short", steps=(5,), end=False)
    (tmp_path / "output" / "not-a-run").mkdir()
    out = subprocess.run([sys.executable, "-m", "floydtui", "runs", str(tmp_path / "output"), "--json"],
                         capture_output=True, text=True, timeout=WAIT_S)
    assert out.returncode == 0, out.stderr
    runs = {Path(r["path"]).name: r for r in map(json.loads, out.stdout.splitlines())}
    assert set(runs) == {"done", "cut-short"}
    assert (runs["done"]["status"], runs["done"]["step"], runs["done"]["loss"]) == ("completed", 20, 0.05)
    assert runs["cut-short"]["status"] == "interrupted", "no run_end, and its process is gone"
    table = subprocess.run([sys.executable, "-m", "floydtui", "runs", str(tmp_path / "output")],
                           capture_output=True, text=True, timeout=WAIT_S).stdout
    assert "completed" in table and "20/20" in table and "0.0500" in table and "project/cut-short" in table
    missing = subprocess.run([sys.executable, "-m", "floydtui", "runs", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=WAIT_S)
    assert missing.returncode == 2 and "no folder" in missing.stderr and "fix:" in missing.stderr


def test_runs_command_does_not_import_textual(tmp_path):
    import subprocess
    import sys
    code = ("import sys; from floydtui.cli import main; main(['runs', sys.argv[1]]); "
            "assert 'textual' not in sys.modules, 'textual imported'")
    recorded_run(tmp_path / "output" / "a", steps=(10,))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "output")], capture_output=True, text=True,
                         timeout=WAIT_S)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("size", SIZES)
def test_the_run_list_opens_a_run_in_the_monitor(tmp_path, monkeypatch, size):
    from floydtui.tui.screens.runs import RunsScreen
    monkeypatch.chdir(tmp_path)
    recorded_run(tmp_path / "output" / "older", steps=(10,))
    newest = recorded_run(tmp_path / "output" / "newer", steps=(10, 20, 30))
    lines = (newest / "events.jsonl").read_text().splitlines()
    (newest / "events.jsonl").write_text("\n".join(lines[:1]).replace('"t": 1.0', '"t": 5.0') + "\n"
                                         + "\n".join(lines[1:]) + "\n")
    app = create_app()

    async def test(pilot):
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.runs, "the run list")
        table = app.screen.table
        assert table.row_count == 2
        first = [plain(c).strip() for c in table.get_row_at(0)]
        assert first[0] == "completed" and first[1] == "30/30" and first[2] == "0.0333" and first[4] == "newer"
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen"
                       and app.screen.state.status == "completed", "the monitor on the newest run")
        assert app.screen.run_dir == newest and app.screen.state.step == 30
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("escape")
        assert type(app.screen).__name__ == "WizardScreen"

    run(app, test, size=size)


# ---- validate now, on a live run -----------------------------------------------------------------
@pytest.mark.slow
def test_validate_now_validates_at_the_next_step_of_a_live_run(tmp_path, repo):
    import json
    import os
    import signal
    import subprocess
    import sys
    import tomllib

    from floydtui.config.preset import dump_toml
    data = tomllib.loads((repo / "presets" / "demo.toml").read_text())
    data["output"]["output_dir"] = str(tmp_path / "run")
    data["datasets"][0]["instance_data_dir"] = str(repo / "examples" / "demo-data")
    data["datasets"][1]["cache_dir"] = str(tmp_path / "cache")
    data["training"]["max_train_steps"] = 2000
    data["training"]["checkpointing_steps"] = 5000
    data["validation"]["validation_steps"] = 5000  # no periodic validation: only the one asked for
    preset = tmp_path / "demo.toml"
    preset.write_text(dump_toml(data))
    run_dir = tmp_path / "run"
    proc = spawn([sys.executable, "-m", "floydtui", "run", str(preset), "--json"], cwd=tmp_path,
                 stdout=subprocess.DEVNULL, stderr=open(tmp_path / "run.log", "wb"))
    events_file = run_dir / "events.jsonl"
    try:
        def first_step():
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            return events_file.exists() and '"type": "step"' in events_file.read_text()
        wait_until(first_step, what="the run's first step", interval=0.2,
                   seen=lambda: events_file.read_text()[-2000:] if events_file.exists() else "no events.jsonl")
        app = create_app(run_dir=run_dir)
        asked: list[float] = []  # the clock just before and just after the key wrote the request

        async def test(pilot):
            monitor = app.screen
            await wait_for(pilot, lambda: monitor.state.step > 0 and monitor.live, "the live run's steps")
            asked.append(time.time())
            await pilot.press("v")
            asked.append(time.time())
            await wait_for(pilot, lambda: monitor.state.validations, "a validation after the request",
                           seen=lambda: f"step {monitor.state.step}")
            vs = monitor.state.validations[0]
            await wait_for(pilot, lambda: monitor.state.step > vs.step, "a step after the validation")
            assert "validation requested" in "\n".join(str(line.text) for line in monitor.log_view.lines)

        run(app, test, size=(100, 30))
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        validations = [e for e in events if e["type"] == "validation"]
        assert len(validations) == 1 and validations[0]["step"] < 2000
        steps = [(e["t"], e["step"]) for e in events if e["type"] == "step"]
        # Taken right after the step that ended when it was written: between the last step before the
        # key and the first step after it (the clock of the machine both share, not its speed).
        before = max((n for t, n in steps if t <= asked[0]), default=0)
        after = min(n for t, n in steps if t > asked[1])
        assert before <= validations[0]["step"] <= after, (before, validations[0]["step"], after)
        assert max(n for _, n in steps) > validations[0]["step"], "the run carried on after validating"
        assert all((run_dir / img["path"]).exists() or Path(img["path"]).exists() for img in validations[0]["images"])
        assert not (run_dir / "requests" / "validate-now.json").exists(), "the request was taken"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# ---- every screen at 80x24 and 100x30 ------------------------------------------------------------
def assert_fits(app, where: str) -> None:
    """Full labels and nothing cut: the key bar, the title, every form label on one line, every button."""
    from rich.text import Text
    from textual.widgets import Button, Label

    from floydtui.tui.widgets.keybar import KeyBar
    width = app.size.width
    bar = app.screen.query_one(KeyBar).render()
    assert bar.cell_len <= width, f"{where}: the key bar is cut: {bar.plain!r}"
    for title in app.screen.query("#title-bar, #run-title, #compare-title, #runs-title"):
        shown = title.render()
        text = shown.plain if isinstance(shown, Text) else plain(shown)
        assert len(text.rstrip()) <= width and not text.rstrip().endswith("…"), f"{where}: title cut: {text!r}"
    for label in app.screen.query(".field-name").results(Label):
        if not label.display or not label.region.width:
            continue
        name = str(label.render())
        assert label.region.height == 1 and len(name) < label.region.width, \
            f"{where}: label {name!r} wraps in {label.region.width} columns"
    for button in app.screen.query(Button):
        if button.display and button.region.width:
            assert Text.from_markup(str(button.label)).cell_len <= button.region.width, \
                f"{where}: button {button.label!r} is cut"


@pytest.mark.parametrize("size", SIZES)
def test_every_wizard_step_fits(repo, size):
    app = create_app(repo / "presets" / "demo.toml")

    async def test(pilot):
        for step, _, _ in STEPS:
            app.screen.go(step)
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert_fits(app, f"{step} at {size}")

    run(app, test, size=size)


@pytest.mark.parametrize("size", SIZES)
def test_the_monitor_the_grid_and_the_run_list_fit(tmp_path, monkeypatch, size):
    from floydtui.tui.screens.compare import CompareScreen
    from floydtui.tui.screens.runs import RunsScreen
    monkeypatch.chdir(tmp_path)
    run_dir = recorded_run(tmp_path / "output" / "a-run-with-a-rather-long-name-to-fit" / "inside", steps=(10, 20))
    app = create_app()

    async def test(pilot):
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.runs, "the run list")
        assert_fits(app, f"run list at {size}")
        await pilot.press("enter")
        await wait_for(pilot, lambda: getattr(app.screen, "run_dir", None) == run_dir
                       and app.screen.state.status == "completed", "the monitor")
        await wait_for(pilot, lambda: app.screen.query(".val-tile"), "the validation tiles")
        assert_fits(app, f"monitor at {size}")
        stats = app.screen.query_one("#run-stats")
        assert stats.region.height >= len(plain(stats.content).rstrip("\n").splitlines()), "stats cut"
        for tile in app.screen.query(".val-tile"):
            caption = plain(tile.content).splitlines()[0].strip()
            assert caption.endswith("…") or caption.endswith(PROMPTS[0]) or any(p in caption for p in PROMPTS)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.query(".compare-cell"),
                       "the grid")
        assert_fits(app, f"grid at {size}")

    run(app, test, size=size)


def test_quitting_from_a_run_opened_from_the_list_still_asks_about_unsaved_changes(tmp_path, monkeypatch):
    from floydtui.tui.screens.dialogs import ChoiceDialog
    from floydtui.tui.screens.runs import RunsScreen
    monkeypatch.chdir(tmp_path)
    recorded_run(tmp_path / "output" / "done", steps=(10,))
    app = create_app()

    async def test(pilot):
        await goto(pilot, "training")
        app.screen.query_one("#field-lora_rank").editor.focus()
        await pilot.press("1", "6")
        assert app.screen.state.dirty
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.runs, "the run list")
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen"
                       and app.screen.state.status == "completed", "the finished run")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), "the unsaved-changes question")
        assert "unsaved changes" in app.screen.question
        await pilot.press("escape")
        assert app.is_running

    run(app, test)
