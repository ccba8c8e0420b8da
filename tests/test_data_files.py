"""Bad and unusual files, discovery, and the metadata and pixel caches invalidating."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from helpers import guide, make_preset, png_bomb, write_image

from floydtui.data import metadata as md
from floydtui.data import pixel_cache
from floydtui.data.dataset import TrainingData
from floydtui.data.scan import scan_preset


def bad_corpus(folder: Path) -> dict[str, str]:
    """Every bad-file kind of issue 3; returns {relative path: expected skip reason}."""
    folder.mkdir(parents=True)
    (folder / "zero.png").write_bytes(b"")
    full = write_image(folder / "full.jpg", 300, 200, quality=90).read_bytes()
    (folder / "full.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(full[: len(full) // 2])
    png = write_image(folder / "tmp.png", 300, 200).read_bytes()
    (folder / "tmp.png").unlink()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "notes.png").write_text("this is a text file named .png\n")
    png_bomb(folder / "bomb.png")
    png_bomb(folder / "bomb-warning.png", 10000, 10000)  # between PIL's limits: a warning, not an error
    os.symlink(folder / "gone.jpg", folder / "dangling.jpg")
    os.mkfifo(folder / "pipe.png")
    return {"zero.png": md.EMPTY, "truncated.jpg": md.TRUNCATED, "truncated.png": md.TRUNCATED,
            "notes.png": md.NOT_AN_IMAGE, "bomb.png": md.BOMB, "bomb-warning.png": md.BOMB, "dangling.jpg": md.CANNOT_READ,
            "pipe.png": md.NOT_A_FILE}


def good_corpus(folder: Path) -> dict[str, str]:
    """Unusual but usable files; returns {relative path: expected note fragment}."""
    rgb = np.full((96, 96, 3), 90, np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.full((96, 96), 32768, np.uint16)).save(folder / "grey16.png")
    pal = Image.new("P", (96, 96), 0)
    pal.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    pal.paste(1, (0, 0, 48, 96))
    pal.save(folder / "palette-transparent.png", transparency=0)
    Image.new("LA", (96, 96), (10, 0)).save(folder / "grey-alpha.png")
    write_image(folder / "café ☕ 日本.png", 96, 96)
    write_image(folder / "with   spaces and_underscores.webp", 96, 96)
    write_image(folder / "UPPER.JPEG", 96, 96)
    write_image(folder / "bitmap.bmp", 96, 96)
    write_image(folder / "real-jpeg-named.png", 96, 96, fmt="JPEG")
    rotated = Image.fromarray(np.zeros((64, 128, 3), np.uint8))  # stored 128 wide, 64 high
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to view": upright it is 64 wide, 128 high
    rotated.save(folder / "rotated.jpg", exif=exif.tobytes())
    return {"cmyk.jpg": "CMYK", "grey16.png": "16-bit", "palette-transparent.png": "flattened onto white",
            "grey-alpha.png": "flattened onto white", "café ☕ 日本.png": "", "UPPER.JPEG": "",
            "with   spaces and_underscores.webp": "", "bitmap.bmp": "", "real-jpeg-named.png": "",
            "rotated.jpg": ""}


def test_bad_files_are_skipped_with_their_reason_and_the_rest_train(tmp_path):
    folder = tmp_path / "imgs"
    bad = bad_corpus(folder)
    good = good_corpus(folder)
    (folder / "caption.txt").write_text("not an image extension: not listed")
    preset = make_preset(tmp_path, [guide(caption_strategy="filename")], train_batch_size=2)
    (scan,) = scan_preset(preset)
    by_rel = {r.rel: r for r in scan.records}
    assert set(by_rel) == set(bad) | set(good)
    for rel, reason in bad.items():
        assert by_rel[rel].status == "skipped" and by_rel[rel].reason == reason, rel
        assert by_rel[rel].detail
    for rel, note in good.items():
        assert by_rel[rel].usable, (rel, by_rel[rel].reason, by_rel[rel].detail)
        assert note in by_rel[rel].note
    assert by_rel["rotated.jpg"].original_size == (64, 128), "EXIF orientation applies to the size"
    assert by_rel["café ☕ 日本.png"].caption == "café ☕ 日本"
    (warning,) = [p for p in scan.problems if "skipped" in p.message]
    assert warning.message.startswith(f"{len(bad)} of {len(bad) + len(good)} files skipped")

    data = TrainingData(preset)
    assert len(data.records) == len(good)
    pixels = {Path(r.path).name: data._pixels(i) for i, r in enumerate(data.records)}
    assert pixels["rotated.jpg"].shape == (128, 64, 3)
    assert abs(int(pixels["grey16.png"].mean()) - 127) <= 1, "16-bit grey scales to 8-bit, not clipped to white"
    assert (pixels["grey-alpha.png"] == 255).all(), "a transparent image flattens onto white"
    pal = pixels["palette-transparent.png"]
    assert (pal[:, 60:] == 255).all() and (pal[:, :40] == (200, 0, 0)).all()
    assert abs(int(pixels["cmyk.jpg"].mean()) - 90) <= 3
    for batch in data.batches(0, 2):
        assert batch.pixels.shape[1:] == (64, 64, 3)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_skipped(tmp_path):
    path = write_image(tmp_path / "imgs" / "locked.png", 64, 64)
    path.chmod(0)
    (scan,) = scan_preset(make_preset(tmp_path, [guide()], train_batch_size=1))
    assert scan.records[0].reason == md.CANNOT_READ


def test_a_file_that_fails_only_when_decoded_is_skipped_at_cache_build(tmp_path):
    folder = tmp_path / "imgs"
    for i in range(4):
        write_image(folder / f"ok{i}.png", 64, 64, seed=i)
    data = write_image(folder / "broken.png", 64, 64).read_bytes()
    i = data.index(b"IDAT") + 8
    (folder / "broken.png").write_bytes(data[:i] + bytes(len(data) - i - 12) + data[-12:])  # whole, but garbage
    preset = make_preset(tmp_path, [guide()])
    (scan,) = scan_preset(preset)
    assert all(r.usable for r in scan.records), "the header and end marker look fine"
    training = TrainingData(preset)
    assert len(training.records) == 4
    assert any("1 of 5 files skipped: 1 cannot decode" in w.message for w in training.warnings)
    (rescan,) = scan_preset(preset)
    assert {r.rel: r.reason for r in rescan.records}["broken.png"] == md.CANNOT_DECODE, "remembered"


def test_symlinks_followed_once_and_loops_detected(tmp_path):
    folder = tmp_path / "imgs"
    write_image(folder / "a" / "one.png", 64, 64)
    write_image(tmp_path / "elsewhere" / "two.png", 64, 64)
    os.symlink(tmp_path / "elsewhere", folder / "linked")
    os.symlink(folder, folder / "a" / "loop")
    write_image(folder / ".hidden" / "three.png", 64, 64)
    (scan,) = scan_preset(make_preset(tmp_path, [guide()], train_batch_size=1))
    assert [r.rel for r in scan.records] == ["a/one.png", "linked/two.png"]
    assert any("symlink loop" in p.message for p in scan.problems)


def test_metadata_cache_rescan_opens_nothing_and_sees_changes(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    for i in range(5):
        write_image(folder / f"{i}.png", 100, 100, seed=i)
    preset = make_preset(tmp_path, [guide()], train_batch_size=1)
    (cold,) = scan_preset(preset)
    assert cold.probed == 5

    def no_open(*a, **k):
        raise AssertionError("a rescan of an unchanged folder opened an image")
    with monkeypatch.context() as m:
        m.setattr(Image, "open", no_open)
        (warm,) = scan_preset(preset)
    assert warm.probed == 0 and [r.to_json() for r in warm.records] == [r.to_json() for r in cold.records]

    write_image(folder / "0.png", 300, 300)  # changed
    write_image(folder / "new.png", 64, 64)  # added
    (folder / "4.png").unlink()  # removed
    (after,) = scan_preset(preset)
    assert after.probed == 2
    sizes = {r.rel: r.original_size for r in after.records}
    assert sizes["0.png"] == (300, 300) and "new.png" in sizes and "4.png" not in sizes


def test_metadata_cache_damaged_file_is_rebuilt(tmp_path):
    write_image(tmp_path / "imgs" / "a.png", 64, 64)
    preset = make_preset(tmp_path, [guide()], train_batch_size=1)
    scan_preset(preset)
    cache = md.MetadataCache(tmp_path / "imgs")
    cache.path.write_text('{"version": 1, "fol')
    (scan,) = scan_preset(preset)
    assert scan.probed == 1 and scan.records[0].usable


def count_builds(monkeypatch) -> list:
    built = []
    real = pixel_cache.build_entry

    def counting(source, *a, **k):
        built.append(Path(source).name)
        return real(source, *a, **k)
    monkeypatch.setattr("floydtui.data.dataset.build_entry", counting)
    return built


def test_pixel_cache_built_once_and_invalidated_by_file_and_fields(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    for i in range(4):
        write_image(folder / f"{i}.png", 400, 300, seed=i)
    built = count_builds(monkeypatch)
    preset = make_preset(tmp_path, [guide()])
    first = TrainingData(preset)
    assert sorted(built) == ["0.png", "1.png", "2.png", "3.png"]
    assert first.records[0].intermediate_size == (171, 128)
    built.clear()
    TrainingData(preset)
    assert built == [], "an unchanged dataset reuses the pixel cache"

    write_image(folder / "2.png", 400, 300, seed=99)
    os.utime(folder / "2.png", ns=(1, 1))
    again = TrainingData(preset)
    assert built == ["2.png"], "only the changed file is decoded again"
    i = next(i for i, r in enumerate(again.records) if r.path.endswith("2.png"))
    assert (again._pixels(i) != first._pixels(i)).any()

    built.clear()
    TrainingData(make_preset(tmp_path, [guide(target_downsample_size=192)]))
    assert sorted(built) == ["0.png", "1.png", "2.png", "3.png"], "a field that changes the pixels rebuilds"
    built.clear()
    TrainingData(make_preset(tmp_path, [guide(crop_style="center", caption_strategy="filename")]))
    assert built == [], "fields that do not change the cached pixels reuse them"


def test_damaged_pixel_cache_entry_is_rebuilt_not_read(tmp_path, monkeypatch):
    write_image(tmp_path / "imgs" / "a.png", 200, 150)
    preset = make_preset(tmp_path, [guide()], train_batch_size=1)
    data = TrainingData(preset)
    good = np.array(data._pixels(0))
    entry = data.records[0].cache_entry
    raw = entry.read_bytes()
    entry.write_bytes(raw[: len(raw) // 2])  # truncated
    assert pixel_cache.read_entry(entry, (200, 150)) is None
    assert (data._pixels(0) == good).all() and entry.read_bytes() == raw
    entry.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))  # same length, damaged
    assert pixel_cache.read_entry(entry, (200, 150)) is None
    built = count_builds(monkeypatch)
    TrainingData(preset)
    assert built == [], "a full-length entry passes the cheap check at start..."
    assert (data._pixels(0) == good).all(), "...and the CRC check on read rebuilds it"


def test_file_broken_during_a_run_is_replaced_not_fatal(tmp_path):
    for i in range(3):
        write_image(tmp_path / "imgs" / f"{i}.png", 64, 64, seed=i)
    data = TrainingData(make_preset(tmp_path, [guide(repeats=0)], train_batch_size=3))
    for r in data.records[:1]:
        r.cache_entry.unlink()
        Path(r.path).write_bytes(b"gone")
    (batch,) = data.batches(0, 3)
    assert len(batch.paths) == 3 and data.records[0].path not in batch.paths
    assert any("became unusable" in w.message for w in data.warnings)


def test_cache_folders_live_under_cache_root(tmp_path):
    write_image(tmp_path / "imgs" / "a.png", 64, 64)
    TrainingData(make_preset(tmp_path, [guide()], train_batch_size=1))
    root = Path(os.environ["FLOYDTUI_CACHE"])
    assert any((root / "scan").iterdir()) and any((root / "pixels").rglob("*.px"))
    shutil.rmtree(root / "pixels")
    TrainingData(make_preset(tmp_path, [guide()], train_batch_size=1))
    assert any((root / "pixels").rglob("*.px")), "a removed cache is rebuilt"


def test_pixel_build_checks_the_bomb_limit_itself(tmp_path, monkeypatch):
    """The threaded cache build cannot rely on a (process-wide) warnings filter."""
    from floydtui.data.pipeline import load_rgb

    path = write_image(tmp_path / "a.png", 64, 64)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(Image.DecompressionBombError) as e:
        load_rgb(path)
    assert md.decode_failure(e.value)[0] == md.BOMB
