"""Every file of a dataset folder is accounted for: images Pillow decodes (TIFF, GIF too) are used or
skipped with a reason; other files are "not images", counted by extension; a walk can be bounded."""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

from floydtui.cli import main
from floydtui.config.preset import load_preset
from floydtui.data.discover import ScanCancelled, discover_images
from floydtui.data.pipeline import DatasetSettings, load_rgb
from floydtui.data.scan import scan_dataset, scan_preset

PRESET = """
[model]
model_flavour = "i-medium-400m"
[training]
train_batch_size = 1
[[datasets]]
id = "mixed"
instance_data_dir = "mixed"
caption_strategy = "textfile"
"""

RED, GREEN, BLUE, WHITE = (220, 20, 20), (20, 200, 20), (20, 20, 220), (255, 255, 255)


def mixed_folder(folder: Path) -> Path:
    """A folder as a user has one: photos with captions, a multi-page TIFF scan, an animated GIF,
    a greyscale TIFF, notes and a Photoshop file."""
    folder.mkdir(parents=True)
    Image.new("RGB", (96, 96), RED).save(folder / "photo.png")
    (folder / "photo.txt").write_text("a red square")
    pages = [Image.new("RGB", (128, 96), RED), Image.new("RGB", (128, 96), GREEN)]
    pages[0].save(folder / "multipage.tif", save_all=True, append_images=pages[1:])
    (folder / "multipage.txt").write_text("a scanned page")
    frames = [Image.new("P", (80, 80), 0) for _ in range(3)]
    for i, frame in enumerate(frames):
        frame.putpalette([*BLUE, *GREEN, *WHITE] + [0] * (256 * 3 - 9))
        frame.paste(i, (0, 0, 80, 80))
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (folder / "animated.txt").write_text("a blue square")
    Image.new("L", (100, 100), 128).save(folder / "grey.tiff")
    (folder / "grey.txt").write_text("a grey square")
    (folder / "notes.txt").write_text("shot on a sunny day")  # not the caption of any image
    (folder / "layers.psd").write_bytes(b"8BPS\x00\x01" + b"\x00" * 64)
    (folder / "README").write_text("no extension at all")
    return folder


def write_preset(tmp_path: Path) -> Path:
    mixed_folder(tmp_path / "mixed")
    path = tmp_path / "preset.toml"
    path.write_text(PRESET)
    return path


def test_every_file_appears_in_scan_json_with_a_status(tmp_path, capsys):
    preset = write_preset(tmp_path)
    assert main(["scan", str(preset), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {Path(r["path"]).name: r for r in lines}
    on_disk = sorted(p.name for p in (tmp_path / "mixed").iterdir())
    assert sorted(by_name) == on_disk, "every file of the folder has a line"
    for r in lines:  # DESIGN.md section 5's fields on every line
        assert {"path", "status", "reason", "original_size", "intermediate_size", "bucket", "caption"} <= set(r)
    for name in ("photo.png", "multipage.tif", "animated.gif", "grey.tiff"):
        assert by_name[name]["status"] == "ok", by_name[name]
    assert by_name["multipage.tif"]["original_size"] == [128, 96]
    assert "multi-page TIFF (2 pages): first page used" in by_name["multipage.tif"]["note"]
    assert "animated GIF (3 frames): first frame used" in by_name["animated.gif"]["note"]
    assert by_name["multipage.tif"]["caption"] == "a scanned page"
    for name in ("photo.txt", "multipage.txt", "animated.txt", "grey.txt"):
        assert (by_name[name]["status"], by_name[name]["reason"]) == ("not_image", "caption file")
    for name in ("notes.txt", "layers.psd", "README"):
        assert (by_name[name]["status"], by_name[name]["reason"]) == ("not_image", "not an image"), by_name[name]
        assert by_name[name]["original_size"] is None and by_name[name]["caption"] is None


def test_the_summary_counts_not_images_by_extension(tmp_path, capsys):
    preset = write_preset(tmp_path)
    assert main(["scan", str(preset)]) == 0
    out = capsys.readouterr().out
    assert "4 files: 4 usable, 0 skipped" in out
    assert "not images: 1 (none), 1 .psd, 1 .txt, 4 caption files" in out
    assert "2 multi-page or animated files: the first page or frame is used" in out


def test_training_pixels_are_the_first_page_and_the_first_frame(tmp_path):
    folder = mixed_folder(tmp_path / "mixed")
    tif, _ = load_rgb(folder / "multipage.tif")
    gif, _ = load_rgb(folder / "animated.gif")
    assert tif.getpixel((5, 5)) == RED, "page 1, not page 2 (green)"
    assert gif.getpixel((5, 5)) == BLUE, "frame 1, not a later one"


def test_a_folder_of_only_other_files_says_what_they_are(tmp_path):
    (tmp_path / "docs").mkdir()
    for i in range(3):
        (tmp_path / "docs" / f"page{i}.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "preset.toml").write_text(PRESET.replace('dir = "mixed"', 'dir = "docs"'))
    scan = scan_preset(load_preset(tmp_path / "preset.toml"))[0]
    error = next(p for p in scan.problems if p.is_error)
    assert "no usable image" in error.message
    assert "3 files are not images (3 .pdf)" in error.hint and ".tiff" in error.hint


def many_files(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{i:05d}.png").touch()
    return folder


def test_a_bounded_walk_stops_and_says_so(tmp_path):
    folder = many_files(tmp_path / "huge", 2_500)
    found = discover_images(folder, max_files=2_000)
    assert found.bounded and 2_000 < found.count < 2_500
    assert not discover_images(folder).bounded and discover_images(folder).count == 2_500
    preset = load_preset_for(tmp_path, "huge")
    settings = DatasetSettings.from_preset(preset, preset.image_datasets[0])
    scan = scan_dataset(settings, max_files=2_000)
    assert scan.bounded == 2_000 and not scan.records
    assert scan.bound_message == f"more than 2,000 files under {folder} — is this the dataset folder?"
    assert [p.message for p in scan.problems] == [scan.bound_message]
    assert "more than 2,000 files" in "\n".join(scan.summary_lines())
    assert scan_dataset(settings).bounded is None, "headless scans are not bounded"


def test_a_walk_stops_at_its_time_bound(tmp_path):
    folder = many_files(tmp_path / "huge", 600)
    found = discover_images(folder, max_seconds=0.0)
    assert found.bounded and found.count < 600


def test_a_cancelled_walk_raises_at_once(tmp_path):
    folder = many_files(tmp_path / "huge", 600)
    asked = []

    def stop() -> bool:
        asked.append(time.monotonic())
        return True
    try:
        discover_images(folder, should_stop=stop)
    except ScanCancelled:
        pass
    else:
        raise AssertionError("the walk went on after should_stop() said stop")
    assert len(asked) == 1


def load_preset_for(tmp_path: Path, folder: str):
    path = tmp_path / "p.toml"
    path.write_text(PRESET.replace('dir = "mixed"', f'dir = "{folder}"'))
    return load_preset(path)
