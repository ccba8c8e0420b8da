"""Atomic writes: a temp file in the same folder, fsync, then rename.

A reader never sees a half-written checkpoint, cache entry, preset or export. The result has
the permissions a plain write would give it: an existing file's own, else the umask's (mkstemp
and mkdtemp make 0600 / 0700, which would hide a LoRA or a preset from the other users of a
shared machine). `private=True` (a preset holding an inline webhook URL, a secret) strips the
group's and others' bits.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path, directory: bool = False, private: bool = False) -> int:
    """What `path` would have written in place: its current mode if it exists, else the umask's;
    `private`: for its owner only."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = (0o777 if directory else 0o666) & ~current_umask()
    return mode & 0o700 if private else mode


def atomic_write_bytes(path: str | os.PathLike, data: bytes, private: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path, private=private))
        os.replace(tmp, path)
    except BaseException:
        _silent_unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, private: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), private=private)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it is renamed onto `path`.

    For libraries that want a filename (safetensors.save_file, PIL.Image.save).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        _silent_unlink(tmp)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder; on success it replaces `path` as a whole (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, _mode_for(path, directory=True))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _silent_unlink(p: str | os.PathLike) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass
