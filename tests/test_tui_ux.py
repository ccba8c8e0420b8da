"""The wizard and the monitor as a user lives in them (issue 15): Pilot at the sizes people use."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
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


async def wait_for(pilot, condition, what: str, timeout: float = 120.0, seen=lambda: ""):
    """Pause until `condition()` holds; fail naming what was awaited and what was seen."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f}s for {what}; saw: {seen()}")
        await pilot.pause(0.05)


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


def test_enter_scans_at_once_and_the_next_edit_cancels(tmp_path):
    real = images(tmp_path / "photos")
    app = create_app()

    async def test(pilot):
        folder = await add_dataset(pilot)
        folder.editor.value = str(real)  # one edit to a folder, then a pause: scanned without Enter
        await wait_for(pilot, lambda: scanned_current(app), "the scan after a pause", seen=lambda: panel(app))
        folder.editor.value = str(real / "a_shape_0.png")  # a file, not a folder: never scanned
        await pilot.pause(0.05)
        assert "not a folder (yet)" in panel(app)
        folder.editor.value = str(real)
        await pilot.press("enter")
        await pilot.pause()
        wizard = app.screen
        assert wizard.scanning is not None or scanned_current(app), "Enter starts the scan without waiting"
        await wait_for(pilot, lambda: scanned_current(app), "the scan after Enter", seen=lambda: panel(app))
        await pilot.press("/")  # the path now ends in "/": a new preset, the old scan is stale
        assert wizard.scans_for is not wizard.state.preset
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
