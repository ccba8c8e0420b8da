"""What one hub repo must provide for a run, what the cache already holds, and what is left.

The file list comes from the hub when it can be asked (names, sizes, blob ids), else from the
listing saved the last time it could, else from the cached snapshot completed with the
expected layout of a DeepFloyd repo (sizes estimated from parameter counts). Each file says
where its size came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from floydtui.errors import Problem
from floydtui.hub.access import access_problem, is_unreachable, offline_problem
from floydtui.hub.cache import (
    blob_exists,
    cached_commit,
    hub_cache_dir,
    is_offline,
    load_listing,
    repo_folder,
    save_listing,
    snapshot_dir,
    snapshot_files,
)
from floydtui.hub.disk import format_size
from floydtui.hub.files import (
    MODEL_INDEX,
    components_for,
    expected_files,
    select_files,
    wanted_variant,
    weight_kind,
)

HUB_TIMEOUT_S = 10.0  # huggingface_hub's own default for metadata calls


@dataclass
class PlannedFile:
    """One file a run needs from a repo."""

    repo_id: str
    filename: str  # the path in the repo; a pattern with * where only the hub knows the exact names
    size: int | None
    size_source: str  # "hub" (asked now) | "listing" (saved when online) | "cache" (on disk) | "estimate"
    cached: bool  # its bytes are in the hub cache (the snapshot's file or the blob it links to)


@dataclass
class RepoPlan:
    """The files one repo must provide, in one role: "model" (the pipeline) or "text encoder" (T5)."""

    repo_id: str
    revision: str
    role: str
    stage: int
    commit: str | None = None
    listed_by: str = "estimate"  # where the file list came from: hub | listing | cache | estimate
    gated: bool = False
    variants: dict[str, str | None] = field(default_factory=dict)  # per weights folder: "fp16" or None
    files: list[PlannedFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # what stops a download (access, network, offline)
    unreachable: bool = False  # the hub could not be asked (offline, no network): the problems may pass
    notes: list[str] = field(default_factory=list)
    cache_dir: Path = field(default_factory=hub_cache_dir)

    @property
    def missing(self) -> list[PlannedFile]:
        return [f for f in self.files if not f.cached]

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def cached_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files if f.cached)

    @property
    def left_bytes(self) -> int:
        return sum(f.size or 0 for f in self.missing)

    @property
    def sizes_known(self) -> bool:
        return all(f.size is not None for f in self.files)

    @property
    def snapshot(self) -> Path | None:
        return snapshot_dir(self.repo_id, self.commit, self.cache_dir) if self.commit else None

    @property
    def variant(self) -> str | None:
        """The weights variant diffusers must be told to load ("fp16" or None)."""
        return self.variants.get("unet", self.variants.get("text_encoder"))

    def summary(self) -> str:
        """One line: repo, files, total, cached, left, and where the sizes came from."""
        sources = sorted({f.size_source for f in self.files})
        at_least = "" if self.sizes_known else "at least "
        return (f"{self.repo_id} ({self.role}{', ' + self.variant if self.variant else ''}): "
                f"{len(self.files)} files, {at_least}{format_size(self.total_bytes)}; in the cache "
                f"{format_size(self.cached_bytes)}; to download {at_least}{format_size(self.left_bytes)} "
                f"[sizes: {', '.join(sources)}]")


def plan_repo(repo_id: str, *, stage: int, revision: str = "main", variant: str | None = None,
              role: str = "model", text_encoder: bool = True, safety: bool = False) -> RepoPlan:
    """The files `repo_id` must provide for a stage-`stage` run, checked against the hub cache.

    Online, the hub lists the repo (and, for a gated repo with files left to fetch, says whether
    this login may download them). Offline (HF_HUB_OFFLINE=1) or unreachable, the cache answers.
    Problems are recorded in the plan, not raised: `floydtui check` shows them all.
    """
    cache = hub_cache_dir()
    plan = RepoPlan(repo_id, revision, role, stage, cache_dir=cache)
    components = components_for(stage, role, text_encoder=text_encoder, safety=safety)
    pipeline = role == "model"
    offline = plan.unreachable = is_offline()
    remote_problem: Problem | None = None
    listing: dict[str, dict] | None = None
    if not offline:
        try:
            plan.commit, listing, plan.gated = _remote_listing(repo_id, revision)
            plan.listed_by = "hub"
            save_listing(repo_id, revision, plan.commit, listing, plan.gated)
        except Exception as exc:
            remote_problem = access_problem(exc, repo_id)
            if remote_problem is None:
                raise
            plan.unreachable = is_unreachable(exc)
    if listing is None:
        saved = load_listing(repo_id, revision)
        plan.commit = cached_commit(repo_id, revision, cache) or (saved or {}).get("commit")
        if saved and saved.get("commit") == plan.commit:
            listing, plan.gated, plan.listed_by = saved["files"], bool(saved.get("gated")), "listing"
    on_disk = snapshot_files(repo_id, plan.commit, cache)
    names = set(listing or {}) | set(on_disk)
    if listing is None:
        components = _listed_components(plan.snapshot, components) if pipeline else components
        plan.listed_by = "cache" if on_disk else "estimate"
    chosen, plan.variants = select_files(sorted(names), components, variant, pipeline=pipeline)
    estimates: dict[str, int | None] = {}
    if listing is None:
        for name, size in _gaps(repo_id, components, chosen, plan.variants, variant, pipeline, on_disk, plan.snapshot):
            chosen.append(name)
            estimates[name] = size
            if weight_kind(name.replace("*", "")):
                plan.variants.setdefault(name.split("/", 1)[0], wanted_variant(variant))
    for name in chosen:
        meta = (listing or {}).get(name, {})
        blob = meta.get("blob")
        # a blob of another snapshot is linked, not downloaded; offline, only the snapshot counts
        cached = name in on_disk or (not offline and blob_exists(repo_id, blob, cache))
        if meta.get("size") is not None:
            size, source = meta["size"], "hub" if plan.listed_by == "hub" else "listing"
        elif name in on_disk:
            size, source = on_disk[name], "cache"
        else:
            size, source = estimates.get(name), "estimate"
        plan.files.append(PlannedFile(repo_id, name, size, source, cached))
    needed = "unet" if pipeline else "text_encoder"
    if listing is not None and needed not in plan.variants:
        plan.problems.append(Problem(
            f"{repo_id} has no {needed}/ weights that diffusers can load", where=f"model {repo_id}",
            key="pretrained_model_name_or_path",
            hint="use a diffusers-format DeepFloyd IF repo, e.g. DeepFloyd/IF-I-M-v1.0"))
    if variant == "fp16" and listing is not None and plan.variants.get(needed, "fp16") is None:
        plan.problems.append(Problem(f"{repo_id} has no fp16 {needed} weights", where=f"model {repo_id}",
                                     key="variant", hint="set variant = \"auto\" or \"none\" in [model] to "
                                                         "fetch the full-precision ones"))
    _record_problems(plan, offline, remote_problem)
    return plan


def _remote_listing(repo_id: str, revision: str) -> tuple[str, dict[str, dict], bool]:
    """(commit, {name: {size, blob}}, gated) from the hub's metadata of `revision`."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=HUB_TIMEOUT_S)
    files = {s.rfilename: {"size": s.size, "blob": s.lfs.sha256 if s.lfs else s.blob_id}
             for s in info.siblings or []}
    return info.sha, files, bool(info.gated)


def _listed_components(snapshot: Path | None, components: tuple[str, ...]) -> tuple[str, ...]:
    """Offline: keep the components a cached model_index.json names (a repo may lack a tokenizer)."""
    try:
        index = json.loads((snapshot / MODEL_INDEX).read_text(encoding="utf-8")) if snapshot else None
    except (OSError, ValueError):
        index = None
    if not isinstance(index, dict):
        return components
    return tuple(c for c in components if isinstance(index.get(c), list) and index[c] and index[c][0])


def _gaps(repo_id: str, components, chosen: list[str], variants: dict, variant: str | None, pipeline: bool,
          on_disk: dict[str, int], snapshot: Path | None) -> list[tuple[str, int | None]]:
    """Files a snapshot-only listing cannot show: absent components, weights, shards, model_index.json."""
    have_folder = {name.split("/", 1)[0] for name in chosen}
    out: list[tuple[str, int | None]] = []
    for name, size in expected_files(repo_id, components, variant, pipeline=pipeline):
        folder = name.split("/", 1)[0] if "/" in name else None
        if folder is None:
            if name not in chosen:
                out.append((name, size))
        elif folder not in have_folder or (weight_kind(name.replace("*", "")) and folder not in variants):
            if name not in chosen:
                out.append((name, size))
    for index_name in [n for n in chosen if n.endswith(".json") and ".index" in n and snapshot]:
        try:
            shards = set(json.loads((snapshot / index_name).read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            continue
        folder = index_name.rsplit("/", 1)[0]
        out += [(f"{folder}/{s}", None) for s in sorted(shards) if f"{folder}/{s}" not in on_disk]
    return out


def _record_problems(plan: RepoPlan, offline: bool, remote_problem: Problem | None) -> None:
    missing = [f.filename for f in plan.missing]
    if not missing:
        if remote_problem:
            plan.notes.append(f"the hub could not be asked ({remote_problem.message}); the cache has every file")
        return
    if offline:
        plan.problems.append(offline_problem(plan.repo_id, missing, str(repo_folder(plan.repo_id, plan.cache_dir))))
    elif remote_problem:
        plan.problems.append(remote_problem)
    elif plan.gated:
        problem = _access_check(plan.repo_id)
        if problem:
            plan.problems.append(problem)


def _access_check(repo_id: str) -> Problem | None:
    """Whether this login may download a gated repo (licence accepted), before fetching gigabytes."""
    from huggingface_hub import HfApi

    try:
        HfApi().auth_check(repo_id)
    except Exception as exc:
        problem = access_problem(exc, repo_id)
        if problem is None:
            raise
        return problem
    return None
