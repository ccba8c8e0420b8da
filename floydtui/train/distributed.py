"""What the processes of a run agree on when there are several, on one machine or many.

Global rank 0 alone writes the run directory; the pixel and text-embed caches are filled once
where every process sees them, or once per machine where each has its own; a checkpoint is
read by rank 0 and sent to the others, so `output_dir` need not be shared. With one process
every helper here is a plain call.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

from floydtui.errors import FloydError

T = TypeVar("T")


def broadcast(accelerator, value: Any = None) -> Any:
    """Rank 0's `value`, on every rank (pickled; for small things and checkpoints)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value if accelerator.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def any_rank(accelerator, flag: bool) -> bool:
    """True on every rank when `flag` is true on any (a barrier too)."""
    if accelerator.num_processes == 1:
        return flag
    total = accelerator.reduce(torch.tensor([int(flag)], device=accelerator.device), reduction="sum")
    return bool(total.item())


def from_main(accelerator, fn: Callable[[], T]) -> T:
    """`fn()` computed by rank 0 and sent to every rank; a FloydError there is raised everywhere."""
    if accelerator.num_processes == 1:
        return fn()
    outcome = None
    if accelerator.is_main_process:
        try:
            outcome = ("ok", fn())
        except FloydError as e:  # the problems travel, not the exception: every rank raises the same
            outcome = ("error", e.problems)
    kind, value = broadcast(accelerator, outcome)
    if kind == "error":
        raise FloydError(value)
    return value


def shared_folders(accelerator, folders: list[Path]) -> list[bool]:
    """For each folder, whether every process sees the one global rank 0 sees (a shared filesystem).

    Rank 0 leaves a marker with a name no earlier run used in each folder; the folder is shared
    when every process finds it. All processes get the same answer, so they split work alike.
    """
    if accelerator.num_processes == 1:
        return [True] * len(folders)
    name = f".floydtui-shared-{broadcast(accelerator, uuid.uuid4().hex)}"
    if accelerator.is_main_process:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).touch()
    accelerator.wait_for_everyone()
    shared = [not any_rank(accelerator, not (folder / name).exists()) for folder in folders]
    if accelerator.is_main_process:  # any_rank waited for everyone to look
        for folder in folders:
            (folder / name).unlink(missing_ok=True)
    return shared


def is_filler(accelerator, shared: bool) -> bool:
    """Whether this process fills a cache: rank 0 for a shared one, each machine's first otherwise."""
    return accelerator.is_main_process if shared else accelerator.is_local_main_process


def fillers_first(accelerator, shared: bool, build: Callable[[], T]) -> T:
    """`build()` on the cache's fillers, then on everyone else, who find the cache full.

    A filler's FloydError (a dataset the user must fix) reaches the others as their own
    `build()` failing the same way, instead of leaving them waiting.
    """
    if accelerator.num_processes == 1:
        return build()
    filler, result, error = is_filler(accelerator, shared), None, None
    if filler:
        try:
            result = build()
        except FloydError as e:
            error = e
    any_rank(accelerator, error is not None)
    if error:
        raise error
    return result if filler else build()


def cache_share(accelerator, shared: bool) -> tuple[int, int]:
    """(rank, number of processes) among those filling one text-embed cache together."""
    if shared:
        return accelerator.process_index, accelerator.num_processes
    local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    return accelerator.local_process_index, local
