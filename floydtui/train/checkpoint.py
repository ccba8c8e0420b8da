"""Resumable checkpoints: checkpoints/checkpoint-NNNNNN/ under the run directory.

Each holds the trainable weights, the optimizer and lr-scheduler states, the RNG states
and the data position (epoch and batch index), written into a temp folder and renamed
into place (fsutil.atomic_dir): a folder that exists is complete. The newest
`checkpoints_total_limit` are kept.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from floydtui.errors import FloydError
from floydtui.fsutil import atomic_dir

_NAME = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "state.json"


@dataclass
class Position:
    """Where training is: optimizer steps done, and the next batch (epoch, index within it)."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0


def checkpoint_dir(output_dir: Path, step: int) -> Path:
    return output_dir / "checkpoints" / f"checkpoint-{step:06d}"


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def remove_partial(output_dir: Path) -> list[Path]:
    """Delete checkpoint temp folders left by a run killed mid-write (never read: they lack the final name)."""
    root = output_dir / "checkpoints"
    if not root.is_dir():
        return []
    partial = [p for p in root.iterdir() if p.name.startswith(".") and p.name.endswith((".tmp", ".old"))]
    for p in partial:
        shutil.rmtree(p, ignore_errors=True)
    return partial


def save_checkpoint(output_dir: Path, position: Position, *, trainable: dict, optimizer, lr_scheduler,
                    fingerprint: dict[str, Any], limit: int, write_lora: Callable[[Path], Any] | None = None) -> Path:
    """Write a checkpoint atomically and prune the oldest beyond `limit`.

    `write_lora` writes the LoRA of this step into the folder (inside the same atomic rename).
    """
    import numpy as np
    import torch
    from safetensors.torch import save_file

    path = checkpoint_dir(output_dir, position.step)
    with atomic_dir(path) as tmp:
        save_file({k: v.contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                    "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                            "python": random.getstate()}}, tmp / "training_state.pt")
        if write_lora:
            write_lora(tmp)
        (tmp / STATE_FILE).write_text(json.dumps({**asdict(position), "fingerprint": fingerprint}, indent=2))
    for old in list_checkpoints(output_dir)[:-limit]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def find_resume(output_dir: Path, resume: str) -> Path | None:
    """The checkpoint `--resume` names: latest (newest, or None), none, or a folder."""
    if resume == "none":
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume).expanduser().resolve()
    if not (path / STATE_FILE).is_file() or not (path / "trainable.safetensors").is_file():
        raise FloydError.one(f"--resume {resume}: not a floydtui checkpoint folder", where="--resume",
                             hint="pass latest, none, or a checkpoints/checkpoint-NNNNNN folder of a run")
    return path


def check_checkpoint(path: Path, fingerprint: dict[str, Any]) -> Position:
    """The checkpoint's position; FloydError when it belongs to other settings. Reads state.json only."""
    meta = json.loads((path / STATE_FILE).read_text())
    saved = meta.get("fingerprint", {})
    changed = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if changed:
        raise FloydError.one(
            f"checkpoint {path.name} was made with other settings: {', '.join(changed)} changed "
            f"({', '.join(f'{k}: {saved.get(k)!r} -> {fingerprint.get(k)!r}' for k in changed[:3])})",
            where=str(path), hint="restore those settings to resume, or start over with --resume none")
    return Position(step=meta["step"], epoch=meta["epoch"], batch_index=meta["batch_index"])


def load_checkpoint(path: Path, fingerprint: dict[str, Any]) -> tuple[Position, dict, dict]:
    """(position, trainable weights, training state); FloydError when it belongs to other settings."""
    import torch
    from safetensors.torch import load_file

    position = check_checkpoint(path, fingerprint)
    state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=False)
    return position, load_file(str(path / "trainable.safetensors")), state


def restore_rng(rng: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
