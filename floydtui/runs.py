"""The runs under a folder: each run directory's status, step, last loss and start time.

`floydtui runs [DIR]` prints them and the wizard's run list shows them; both read only the
run directories' `events.jsonl` (DESIGN.md section 7): its first lines for `run_start`,
its last 64 KiB for the latest step and `run_end`, so a run of 100,000 steps lists as fast
as a short one. And the requests a watcher writes into a run directory (the trainer takes them:
floydtui/train/control.py). No Textual here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floydtui.fsutil import atomic_write_text

EVENTS = "events.jsonl"
REQUESTS = "requests"  # the folder of requests in a run directory (DESIGN.md section 2)
VALIDATE_NOW = "validate-now.json"
MAX_DEPTH = 3  # output/<run>/ is one level; a folder of projects of runs is three
_HEAD_BYTES = 16 * 1024
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class RunInfo:
    """One run directory, as its events describe it."""

    path: Path
    status: str  # completed / failed / stopped / running / interrupted / starting
    run_id: str = ""
    flavour: str = ""
    model: str = ""
    started: float | None = None  # unix seconds of run_start
    step: int = 0
    total_steps: int = 0
    loss: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "status": self.status, "run_id": self.run_id, "flavour": self.flavour,
                "model": self.model, "started": self.started, "step": self.step, "total_steps": self.total_steps,
                "loss": self.loss}


def find_runs(root: Path, max_depth: int = MAX_DEPTH) -> list[RunInfo]:
    """Every run directory (a folder with events.jsonl) at or under `root`, newest first."""
    found = []
    pending = [(Path(root), 0)]
    while pending:
        folder, depth = pending.pop()
        if (folder / EVENTS).is_file():
            found.append(read_run(folder))
            continue  # a run's own subfolders (checkpoints, validation) hold no runs
        if depth >= max_depth:
            continue
        try:
            children = [e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]
        except OSError:
            continue
        pending.extend((Path(e.path), depth + 1) for e in children)
    return sorted(found, key=lambda r: (r.started or 0.0, str(r.path)), reverse=True)


def read_run(run_dir: Path) -> RunInfo:
    """A run directory's summary from the head and tail of its events.jsonl."""
    head, tail = _head_and_tail(run_dir / EVENTS)
    start = next((e for e in head if e.get("type") == "run_start"), None)
    if start is None:
        start = next((e for e in tail if e.get("type") == "run_start"), {})
    last_step = next((e for e in reversed(tail) if e.get("type") == "step"), None)
    end = next((e for e in reversed(tail) if e.get("type") == "run_end"), None)
    if end is not None and (start.get("t") or 0) > (end.get("t") or 0):
        end = None  # a resumed run started again after its earlier end
    if end is not None:
        status = str(end.get("status") or "completed")
    elif not start:
        status = "starting"
    else:
        status = "running" if _alive(start.get("pid"), start.get("host")) else "interrupted"
    model = str(start.get("model_id") or start.get("base_model") or "")
    loss = last_step.get("loss") if last_step else None
    return RunInfo(path=run_dir, status=status, run_id=str(start.get("run_id") or ""),
                   flavour=str(start.get("flavour") or ""), model=model,
                   started=float(start["t"]) if isinstance(start.get("t"), (int, float)) else None,
                   step=int(last_step.get("step") or 0) if last_step else 0,
                   total_steps=int(start.get("total_steps") or 0),
                   loss=float(loss) if isinstance(loss, (int, float)) else None)


def _head_and_tail(path: Path) -> tuple[list[dict], list[dict]]:
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
    except OSError:
        return [], []
    return _lines(head, cut_first=False), _lines(tail, cut_first=size > _TAIL_BYTES)


def _lines(data: bytes, cut_first: bool) -> list[dict]:
    """The whole JSON lines of a chunk (a chunk cut mid-line loses that line, as a reader would)."""
    lines = data.split(b"\n")
    if cut_first:
        lines = lines[1:]
    out = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def _alive(pid: Any, host: Any) -> bool:
    """Whether the run's process is alive; a run on another host is taken to be running."""
    if host and host != socket.gethostname():
        return True
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def format_runs(runs: list[RunInfo], root: Path) -> list[str]:
    """The table `floydtui runs` prints: status, step, last loss, start time, folder."""
    import time

    if not runs:
        return [f"no run directories under {root} (a run directory holds events.jsonl)"]
    lines = [f"{'status':<12} {'step':>13} {'loss':>8}  {'started':<16}  folder"]
    for r in runs:
        step = f"{r.step:,}/{r.total_steps:,}" if r.total_steps else f"{r.step:,}"
        loss = f"{r.loss:.4f}" if r.loss is not None else "—"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "—"
        lines.append(f"{r.status:<12} {step:>13} {loss:>8}  {started:<16}  {_shown(r.path, root)}")
    return lines


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def request_validation(run_dir: str | os.PathLike) -> Path:
    """Ask the run in `run_dir` to validate after its current step (the file is the request)."""
    return atomic_write_text(Path(run_dir) / REQUESTS / VALIDATE_NOW,
                             json.dumps({"t": round(time.time(), 3), "pid": os.getpid()}) + "\n")
