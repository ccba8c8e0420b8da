"""Real models from the Hugging Face hub: plans, downloads, access errors, disk space.

    fetch_model(repo_id, stage=1)        -> a snapshot folder for IFPipeline.from_pretrained
    text_encoder_source / fetch_text_encoder -> T5 for stage II (its repos hold none)
    plan_download(preset), disk_section(preset), preflight_disk(preset)
    DiskGuard(paths, min_free_mib).check(what)   during a run
    redact(text)                         scrub the hub token from text

Importing this package loads neither huggingface_hub nor torch: each function imports what it
uses, so `floydtui check` of a built-in model stays instant. See docs/hub.md.
"""

from floydtui.hub.access import redact
from floydtui.hub.cache import hub_cache_dir, is_offline
from floydtui.hub.disk import DiskGuard, format_size
from floydtui.hub.download import (
    fetch_model,
    fetch_text_encoder,
    text_encoder_source,
    weights_variant,
)
from floydtui.hub.plan import DiskRoom, DownloadPlan, disk_section, folder_problems, plan_download, preflight_disk
from floydtui.hub.repo import PlannedFile, RepoPlan, plan_repo

__all__ = [
    "DiskGuard", "DiskRoom", "DownloadPlan", "PlannedFile", "RepoPlan", "disk_section", "fetch_model",
    "fetch_text_encoder", "format_size", "hub_cache_dir", "is_offline", "plan_download",
    "plan_repo", "folder_problems", "preflight_disk", "redact", "text_encoder_source", "weights_variant",
]
