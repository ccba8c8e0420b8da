"""Requests from whoever watches a run, through the run directory (DESIGN.md section 2).

The monitor never talks to the trainer directly: it writes a request file into the run
directory (atomically, `floydtui.runs.request_validation`), and the trainer takes it once a step (one unlink, which fails at once when there is none). Today the one
request is "validate now": the run validates after its current step and carries on.
"""

from __future__ import annotations

import os
from pathlib import Path

from floydtui.runs import REQUESTS, VALIDATE_NOW


def validation_requested(run_dir: Path, accelerator, main: bool) -> bool:
    """True (on every process) once for each request file: the main process takes it, the others agree."""
    asked = False
    if main:
        try:
            os.remove(run_dir / REQUESTS / VALIDATE_NOW)
            asked = True
        except FileNotFoundError:
            pass
        except OSError:  # a request that cannot be taken is left for the next step
            pass
    if accelerator.num_processes > 1:
        import torch

        flag = torch.tensor([int(asked)], device=accelerator.device)
        asked = bool(accelerator.reduce(flag, reduction="sum").item())
    return asked
