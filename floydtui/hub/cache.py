"""Where huggingface_hub keeps models on disk, read the way huggingface_hub lays it out.

    HF_HUB_CACHE/models--ORG--NAME/
      refs/<revision>            the commit a branch or tag pointed at when last fetched
      snapshots/<commit>/<path>  symlinks into blobs/ (copies where symlinks are not supported)
      blobs/<etag>               the file contents: sha256 for LFS files, the git blob id otherwise

Nothing here imports huggingface_hub: `floydtui check` for a built-in model stays instant.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import quote

from floydtui.fsutil import atomic_write_text
from floydtui.paths import cache_root

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    """The hub cache folder, from the environment as it is now.

    Same precedence as huggingface_hub.constants (HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME/hub,
    XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub), read at call time because the
    library freezes its constants when first imported.
    """
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"),
                                              "huggingface")
    value = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(value)))


def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, now or when huggingface_hub was imported."""
    env = os.environ
    if (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").upper() in _TRUE:
        return True
    constants = sys.modules.get("huggingface_hub.constants")
    return bool(constants and constants.HF_HUB_OFFLINE)


def repo_folder(repo_id: str, cache_dir: Path | None = None) -> Path:
    """models--ORG--NAME under the hub cache (huggingface_hub's repo_folder_name)."""
    return (cache_dir or hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def cached_commit(repo_id: str, revision: str, cache_dir: Path | None = None) -> str | None:
    """The commit `revision` resolves to in the cache, or None when it was never fetched."""
    folder = repo_folder(repo_id, cache_dir)
    if COMMIT_RE.match(revision):
        return revision if (folder / "snapshots" / revision).is_dir() else None
    try:
        commit = (folder / "refs" / revision).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if COMMIT_RE.match(commit) else None


def write_ref(repo_id: str, revision: str, commit: str, cache_dir: Path | None = None) -> None:
    """Point refs/<revision> at `commit`, as huggingface_hub does after a download by branch name."""
    if revision != commit:
        atomic_write_text(repo_folder(repo_id, cache_dir) / "refs" / revision, commit)


def snapshot_dir(repo_id: str, commit: str, cache_dir: Path | None = None) -> Path:
    return repo_folder(repo_id, cache_dir) / "snapshots" / commit


def snapshot_files(repo_id: str, commit: str | None, cache_dir: Path | None = None) -> dict[str, int]:
    """Every complete file of a cached snapshot (a dangling link is not one) and its size."""
    if not commit:
        return {}
    root = snapshot_dir(repo_id, commit, cache_dir)
    out: dict[str, int] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                out[path.relative_to(root).as_posix()] = path.stat().st_size
            except OSError:
                continue  # a link whose blob was deleted: not in the cache
    return out


def blob_exists(repo_id: str, blob: str | None, cache_dir: Path | None = None) -> bool:
    """The blob is in the cache, so huggingface_hub would link it instead of downloading it."""
    return bool(blob) and (repo_folder(repo_id, cache_dir) / "blobs" / blob).is_file()


# A repo's file listing (names, sizes, blob ids) saved when the hub was last reachable, so that
# an offline plan knows what a snapshot lacks and how big it is. Keyed by revision as asked.
def _listing_path(repo_id: str, revision: str) -> Path:
    return cache_root() / "hub-listings" / repo_id.replace("/", "--") / (quote(revision, safe="") + ".json")


def save_listing(repo_id: str, revision: str, commit: str, files: dict[str, dict], gated: object) -> None:
    """Keep the hub's listing of a revision for later offline plans."""
    data = {"repo_id": repo_id, "revision": revision, "commit": commit, "gated": gated, "files": files}
    try:
        atomic_write_text(_listing_path(repo_id, revision), json.dumps(data, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only floydtui cache only costs offline plans their exact sizes


def load_listing(repo_id: str, revision: str) -> dict | None:
    """The listing saved by `save_listing`, or None."""
    try:
        data = json.loads(_listing_path(repo_id, revision).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        return None
    return data
