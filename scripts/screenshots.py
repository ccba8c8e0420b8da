"""A PNG of every screen of the real app at a fixed size: `python scripts/screenshots.py [WIDTHxHEIGHT]`.

Each screen is driven with Textual's Pilot, saved as SVG (app.save_screenshot), then turned
into PNG with cairosvg (`pip install -e ".[screenshots]"`). The wizard opens presets/demo.toml
(the built-in tiny model, so no download), an assumed 24G GPU makes the hardware step
deterministic, and the monitor shows a real run of presets/demo.toml.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
OUT = REPO / "screenshots"


async def wait(pilot, seconds: float = 0.4) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause(seconds / 3)


BUSY = ("Detecting", "scanning", "Checking")


async def settled(pilot, ceiling: float = 300.0) -> None:
    """Wait until no pane says it is still working (a loaded machine detects and scans slowly)."""
    import time

    end = time.monotonic() + ceiling
    while time.monotonic() < end:
        await wait(pilot)
        text = pilot.app.export_screenshot()
        if not any(marker in text for marker in BUSY):
            return
        await pilot.pause(0.5)
    raise SystemExit(f"a screen was still busy after {ceiling:.0f} s: {[m for m in BUSY if m in text]}")


def svg_to_png(svg: Path, png: Path) -> None:
    import cairosvg

    cairosvg.svg2png(url=str(svg), write_to=str(png), output_width=None)


def shoot(app, name: str, tmp: Path) -> None:
    svg = tmp / f"{name}.svg"
    app.save_screenshot(str(svg))
    svg_to_png(svg, OUT / f"{name}.png")
    print(f"screenshots/{name}.png")


async def wizard(size: tuple[int, int], tmp: Path) -> None:
    from floydtui.tui.app import create_app

    preset = tmp / "demo.toml"
    text = (REPO / "presets" / "demo.toml").read_text()
    preset.write_text(text.replace('"../', f'"{REPO}/'))
    app = create_app(preset)
    async with app.run_test(size=size) as pilot:
        await wait(pilot)
        shoot(app, "1-flavour", tmp)
        for name in ("2-hardware", "3-training", "4-validation", "5-datasets", "6-text-embeds", "7-review"):
            await pilot.press("ctrl+n")
            await wait(pilot, 1.0)
            await settled(pilot)
            if name == "5-datasets":
                await pilot.pause(1.0)
                await wait(pilot)
            if name == "3-training":  # show an error caught where it is typed
                rank = app.screen.query_one("#field-lora_rank")
                rank.editor.focus()
                await pilot.press("end", "x")
                await wait(pilot)
                shoot(app, name, tmp)
                await pilot.press("backspace")
                continue
            shoot(app, name, tmp)


async def monitor(size: tuple[int, int], tmp: Path) -> None:
    import subprocess

    from floydtui.events import EventReader
    from floydtui.tui.app import create_app

    # A real run of the demo (the tiny model, about half a minute on a CPU): the monitor shows
    # what a user sees, its loss curve and its validation images included.
    run_dir = tmp / "run"
    subprocess.run([sys.executable, "-m", "floydtui", "run", str(REPO / "presets" / "demo.toml"),
                    "--output-dir", str(run_dir), "--json"], check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    app = create_app(run_dir=run_dir, reader=EventReader(run_dir / "events.jsonl"))
    async with app.run_test(size=size) as pilot:
        await pilot.pause(1.5)
        shoot(app, "8-monitor", tmp)
        await pilot.press("c")  # validation images across steps
        await pilot.pause(1.5)
        shoot(app, "10-compare", tmp)
    from floydtui.tui.screens.runs import RunsScreen

    listing = create_app()
    async with listing.run_test(size=size) as pilot:
        listing.push_screen(RunsScreen([tmp]))
        await pilot.pause(1.0)
        shoot(listing, "11-runs", tmp)
    small = create_app()
    async with small.run_test(size=(60, 16)) as pilot:
        await pilot.pause(0.3)
        shoot(small, "9-too-small", tmp)


def main() -> int:
    size = tuple(int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "120x36").split("x"))
    os.environ["FLOYDTUI_ASSUME_GPU"] = "RTX 4090:24564"
    os.environ.setdefault("FLOYDTUI_CACHE", tempfile.mkdtemp(prefix="floydtui-shots-cache-"))
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="floydtui-shots-") as tmp:
        asyncio.run(wizard(size, Path(tmp)))
        asyncio.run(monitor(size, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
