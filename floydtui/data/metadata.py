"""What an image file is, from its header, and a per-folder cache of it.

`probe_file` reads the header (PIL's lazy open: the size without decoding the pixels),
applies the EXIF orientation to the size, and checks cheaply that the file is whole (the
end marker of a JPEG or PNG); only a file that fails that check is decoded to decide.
`MetadataCache` keeps the answers per folder, keyed by relative path, size and mtime, so a
rescan of an unchanged folder opens no image at all.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from floydtui.data.pipeline import has_alpha
from floydtui.fsutil import atomic_write_text
from floydtui.paths import cache_root

CACHE_VERSION = 2  # 2: facts count the frames of a multi-page or animated file

# Skip reasons of files that are not usable images, whatever the dataset's settings.
EMPTY = "empty file"
NOT_AN_IMAGE = "not an image"
TRUNCATED = "truncated"
BOMB = "decompression bomb"
CANNOT_READ = "cannot read"
NOT_A_FILE = "not a regular file"
CANNOT_DECODE = "cannot decode"

_ORIENTATION_TAG = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_PNG_END = b"IEND\xaeB`\x82"


def probe_file(path: Path, st: os.stat_result | None = None) -> dict[str, Any]:
    """The header facts of one file: size (upright), mode, format, alpha, or why it is unusable."""
    try:
        st = st or os.stat(path)
    except OSError as e:
        return _bad(CANNOT_READ, _os_detail(e, path))
    if not stat.S_ISREG(st.st_mode):
        return _bad(NOT_A_FILE, "a device, pipe or socket, not an image file")
    if st.st_size == 0:
        return _bad(EMPTY, "zero bytes")
    try:
        # A bomb between PIL's two limits only warns; here it is a skip. (The filter is process-wide
        # while it lasts: scans run on one thread, the threaded pixel-cache build checks explicitly.)
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(f)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                return _bad(BOMB, str(e))
            except UnidentifiedImageError:
                return _bad(NOT_AN_IMAGE, "the content is not an image Pillow can read, whatever its extension")
            except (SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
                return _bad(NOT_AN_IMAGE, f"unreadable header: {e}")
            w, h = im.size
            try:
                orientation = im.getexif().get(_ORIENTATION_TAG, 1)
            except Exception:  # a malformed EXIF block leaves the image as stored
                orientation = 1
            if orientation in _TRANSPOSED:
                w, h = h, w
            facts = {"status": "ok", "w": w, "h": h, "mode": im.mode, "format": im.format,
                     "alpha": has_alpha(im.mode, im.info), "frames": _frames(im)}
            if not _looks_whole(f, im.format, st.st_size):
                try:
                    im.load()  # the cheap check failed: let a full decode decide
                except Exception as e:
                    return _bad(*decode_failure(e))
            return facts
    except OSError as e:
        return _bad(CANNOT_READ, _os_detail(e, path))


def _frames(im: Image.Image) -> int:
    """Pages of a TIFF, frames of a GIF/APNG/WebP; training uses the first (PIL opens on it)."""
    try:
        return int(getattr(im, "n_frames", 1) or 1)
    except Exception:  # counting walks the file: a damaged later frame leaves the first usable
        return 1


def _looks_whole(f, fmt: str | None, size: int) -> bool:
    """A cheap end-of-file check; False means 'decode to find out', not 'broken'."""
    if fmt in ("JPEG", "MPO"):
        f.seek(max(0, size - 4096))
        return b"\xff\xd9" in f.read()
    if fmt == "PNG":
        f.seek(max(0, size - 12))
        return f.read().endswith(_PNG_END)
    if fmt == "WEBP":
        f.seek(4)
        riff_size = int.from_bytes(f.read(4), "little")
        return size >= riff_size + 8
    return False


def decode_failure(e: BaseException) -> tuple[str, str]:
    """(skip reason, detail) for an exception raised while decoding an image."""
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return BOMB, str(e)
    if "truncated" in str(e) or isinstance(e, EOFError):
        return TRUNCATED, str(e) or "the file ends early"
    if isinstance(e, OSError) and e.errno is not None:
        return CANNOT_READ, e.strerror or str(e)
    return CANNOT_DECODE, f"{type(e).__name__}: {e}"


def _bad(reason: str, detail: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason, "detail": detail}


def _os_detail(e: OSError, path: str | Path) -> str:
    if e.errno == errno.ENOENT and os.path.islink(path):
        return "broken symbolic link"
    return e.strerror or str(e)


class MetadataCache:
    """Header facts and sidecar captions of one folder, saved atomically as JSON."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        key = hashlib.sha1(str(folder.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:20]
        self.path = cache_root() / "scan" / f"{key}.json"
        self.files: dict[str, dict[str, Any]] = {}
        self.sidecars: dict[str, dict[str, Any]] = {}
        self.dirty = False
        self.probed = 0  # files opened by this scan (0 on a rescan of an unchanged folder)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION and data.get("folder") == str(folder.resolve()):
                self.files, self.sidecars = data["files"], data["sidecars"]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no cache yet, or a damaged one: rescan

    def facts(self, rel: str, path: str | Path, st: os.stat_result | OSError) -> dict[str, Any]:
        """The file's facts, from the cache when its size and mtime are unchanged."""
        if isinstance(st, OSError):
            return _bad(CANNOT_READ, _os_detail(st, path))
        entry = self.files.get(rel)
        if entry is not None and entry["size"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns:
            return entry
        self.probed += 1
        entry = probe_file(Path(path), st) | {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        self.files[rel] = entry
        self.dirty = True
        return entry

    def mark_skipped(self, rel: str, reason: str, detail: str) -> None:
        """Record a file that failed to decode later (pixel cache), until it changes."""
        entry = self.files.get(rel)
        if entry:
            self.files[rel] = _bad(reason, detail) | {"size": entry["size"], "mtime_ns": entry["mtime_ns"]}
            self.dirty = True

    def sidecar(self, rel: str, path: Path) -> dict[str, Any]:
        """A caption file's text ({"text": ...}) or why there is none ({"error": ...})."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return {"error": "missing"}
        except OSError as e:
            return {"error": f"unreadable ({e.strerror or e})"}
        entry = self.sidecars.get(rel)
        if entry and entry["size"] == st.st_size and entry["mtime_ns"] == st.st_mtime_ns:
            return entry
        try:
            raw = path.read_bytes()
            entry = {"text": raw.decode("utf-8-sig")}
        except UnicodeDecodeError:
            entry = {"error": "not UTF-8"}
        except OSError as e:
            entry = {"error": f"unreadable ({e.strerror or e})"}
        entry |= {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        self.sidecars[rel] = entry
        self.dirty = True
        return entry

    def keep_only(self, rels: set[str], sidecar_rels: set[str]) -> None:
        """Forget removed files, so the cache does not grow with every rename."""
        for table, keep in ((self.files, rels), (self.sidecars, sidecar_rels)):
            for rel in [r for r in table if r not in keep]:
                del table[rel]
                self.dirty = True

    def save(self) -> None:
        """Write the cache if anything changed; a cache that cannot be written only costs speed."""
        if not self.dirty:
            return
        data = {"version": CACHE_VERSION, "folder": str(self.folder.resolve()), "files": self.files,
                "sidecars": self.sidecars}
        try:
            atomic_write_text(self.path, json.dumps(data, ensure_ascii=True))
            self.dirty = False
        except OSError:
            pass
