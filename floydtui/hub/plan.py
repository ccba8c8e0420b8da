"""The download plan of a preset and the disk section of `floydtui check`.

Before a run (and in `floydtui check` and the wizard's hardware screen): which files the base
model needs, their sizes, what the hub cache holds, what is left, and whether the disks that
hold the hub cache, the output folder and the text-embed cache have room, with the numbers.
Not enough room is an error before anything is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from floydtui.config.flavours import builtin_label, classify_model
from floydtui.errors import CheckSection, FloydError, Problem
from floydtui.hub.access import hub_token, licence_url
from floydtui.hub.cache import hub_cache_dir, is_offline
from floydtui.hub import disk
from floydtui.hub.disk import MIB, device_of, format_size, mount_point
from floydtui.hub.download import text_encoder_source
from floydtui.hub.files import MODEL_INDEX
from floydtui.hub.repo import PlannedFile, RepoPlan, plan_repo


@dataclass
class DiskRoom:
    """One filesystem a run writes to: what it holds, its free space and what it must keep."""

    mount: Path
    labels: list[str]  # "hub cache", "output_dir", "text embeds cache"
    paths: list[Path]
    free: int
    download: int  # bytes the plan writes there before training
    min_free_mib: int

    @property
    def need(self) -> int:
        return self.download + self.min_free_mib * MIB

    @property
    def ok(self) -> bool:
        return self.free >= self.need


@dataclass
class DownloadPlan:
    """What a preset's base model needs from the hub, and whether the disks have room."""

    base_model: str
    kind: str  # "hub" | "builtin" | "local"
    offline: bool
    cache_dir: Path
    min_free_mib: int
    repos: list[RepoPlan] = field(default_factory=list)
    disks: list[DiskRoom] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[PlannedFile]:
        return [f for r in self.repos for f in r.files]

    @property
    def total_bytes(self) -> int:
        return sum(r.total_bytes for r in self.repos)

    @property
    def cached_bytes(self) -> int:
        return sum(r.cached_bytes for r in self.repos)

    @property
    def left_bytes(self) -> int:
        return sum(r.left_bytes for r in self.repos)

    @property
    def disk_problems(self) -> list[Problem]:
        return [p for p in self.problems if p.key == "min_free_disk_mib"]

    def lines(self) -> list[str]:
        """The human summary `floydtui check` prints."""
        out = []
        for repo in self.repos:
            out.append(repo.summary())
            if repo.gated:
                out.append(f"  gated: accept the licence at {licence_url(repo.repo_id)}")
            out += [f"  {n}" for n in repo.notes]
        out += self.notes
        if self.kind == "hub":
            out.append(f"hub cache {self.cache_dir}" + (" (HF_HUB_OFFLINE=1: the cache alone)" if self.offline else ""))
        for d in self.disks:
            needs = f"{format_size(d.download)} to download + " if d.download else ""
            out.append(f"disk {d.mount} ({', '.join(d.labels)}): {format_size(d.free)} free, needs {needs}"
                       f"{d.min_free_mib} MiB kept free (min_free_disk_mib)")
        return out

    def to_dict(self) -> dict[str, Any]:
        """For `floydtui check --json` and the wizard: numbers in bytes, no secrets."""
        return {
            "kind": self.kind, "base_model": self.base_model, "offline": self.offline,
            "cache_dir": str(self.cache_dir), "total_bytes": self.total_bytes,
            "cached_bytes": self.cached_bytes, "left_bytes": self.left_bytes,
            "repos": [{"repo_id": r.repo_id, "revision": r.revision, "commit": r.commit, "role": r.role,
                       "listed_by": r.listed_by, "gated": r.gated, "variant": r.variant,
                       "total_bytes": r.total_bytes, "left_bytes": r.left_bytes,
                       "files": [{"filename": f.filename, "size": f.size, "size_source": f.size_source,
                                  "cached": f.cached} for f in r.files]} for r in self.repos],
            "disks": [{"mount": str(d.mount), "labels": d.labels, "free_bytes": d.free,
                       "download_bytes": d.download, "min_free_disk_mib": d.min_free_mib, "ok": d.ok}
                      for d in self.disks],
        }


def plan_download(preset) -> DownloadPlan:
    """The download plan of a preset's base model, with the disk room of every folder the run writes."""
    base = preset.base_model
    kind = classify_model(base, preset.base_dir).kind
    plan = DownloadPlan(base, kind, is_offline(), hub_cache_dir(), preset.training["min_free_disk_mib"])
    if kind == "builtin":
        plan.notes.append(f"{base}: the built-in {builtin_label(base) or 'model'}, "
                          + ("shipped in the package" if "shapes" in base else "generated locally")
                          + ": nothing to download")
    elif kind == "local":
        _check_local(Path(base), plan)
    else:
        variant = preset.model["variant"]
        plan.repos.append(plan_repo(base, stage=preset.stage, revision=preset.model["revision"], variant=variant,
                                    text_encoder=preset.stage == 1))
        if preset.stage == 2:
            source = text_encoder_source(base, 2)
            plan.notes.append(f"stage II repos hold no text encoder: T5 comes from {source}")
            plan.repos.append(plan_repo(source, stage=1, variant=variant, role="text encoder"))
        for repo in plan.repos:
            plan.problems += [_until_reachable(p) if repo.unreachable else p for p in repo.problems]
        plan.notes.append("logged in to the hub" if hub_token() else "not logged in to the hub")
    _check_room(preset, plan)
    return plan


def _until_reachable(problem: Problem) -> Problem:
    """Offline or without network a check warns: the cache may be filled, the network come back."""
    return replace(problem, severity="warning", hint=problem.hint + "; until then a run stops at this point")


def _check_local(folder: Path, plan: DownloadPlan) -> None:
    if not folder.is_dir():
        plan.problems.append(Problem(f"the base model folder {folder} does not exist", where=str(folder),
                                     key="pretrained_model_name_or_path",
                                     hint="fix the path, or give a hub id such as DeepFloyd/IF-I-M-v1.0"))
    elif not (folder / MODEL_INDEX).is_file():
        plan.problems.append(Problem(f"{folder} has no {MODEL_INDEX}: not a diffusers pipeline folder",
                                     where=str(folder), key="pretrained_model_name_or_path", severity="warning",
                                     hint="point at the folder that `save_pretrained` wrote"))
    else:
        plan.notes.append(f"local folder {folder}: nothing to download")


def folder_problems(preset) -> list[Problem]:
    """The folders a run writes (output_dir, the text-embed cache) that cannot be made or written."""
    where = str(preset.source) if preset.source else "preset"
    embeds = preset.text_embeds_dataset
    places = [(preset.output_dir, "output_dir", f"{where} [output]", "output_dir"),
              (preset.text_embeds_cache_dir, "cache_dir", f"{where} [[datasets]] {embeds['id']!r}",
               "the text-embed cache's cache_dir")]
    problems = []
    for path, key, place, name in places:
        reason = disk.folder_problem(path)
        if reason:
            problems.append(Problem(f"{key} = {str(path)!r} cannot be used: {reason}", where=place, key=key,
                                    hint=f"point {name} at a folder this user can create and write"))
    return problems


def _check_room(preset, plan: DownloadPlan) -> None:
    plan.problems.extend(folder_problems(preset))
    places = [("output_dir", preset.output_dir), ("text embeds cache", preset.text_embeds_cache_dir)]
    if plan.kind == "hub":
        places.insert(0, ("hub cache", plan.cache_dir))
    by_device: dict[int, DiskRoom] = {}
    for label, path in places:
        dev = device_of(path)
        if dev not in by_device:
            by_device[dev] = DiskRoom(mount_point(path), [], [], disk.free_bytes(path), 0, plan.min_free_mib)
        by_device[dev].labels.append(label)
        by_device[dev].paths.append(Path(path))
        if label == "hub cache":  # what cannot be fetched now (offline) takes no room now
            by_device[dev].download += sum(r.left_bytes for r in plan.repos if not r.unreachable)
    plan.disks = list(by_device.values())
    for d in plan.disks:
        if d.ok:
            continue
        hint = f"free {format_size(d.need - d.free)} on {d.mount}"
        if d.download:
            hint += ", point HF_HUB_CACHE at a disk with room"
        plan.problems.append(Problem(
            f"not enough room on {d.mount} ({', '.join(d.labels)}): {format_size(d.free)} free, needs "
            f"{format_size(d.download)} to download + {d.min_free_mib} MiB kept free = {format_size(d.need)}",
            where=f"disk {d.mount}", key="min_free_disk_mib", hint=hint + ", or lower min_free_disk_mib"))


def disk_section(preset) -> CheckSection:
    """The `floydtui check` section (and the wizard's hardware screen): downloads and disk room."""
    plan = plan_download(preset)
    return CheckSection("download and disk", plan.lines(), list(plan.problems), plan.to_dict())


def preflight_disk(preset, plan: DownloadPlan | None = None) -> DownloadPlan:
    """Refuse a run, before any work, when a disk it writes to lacks room; return the plan."""
    plan = plan or plan_download(preset)
    errors = [p for p in plan.disk_problems if p.is_error]
    if errors:
        raise FloydError(errors)
    return plan
