"""What the monitor knows about a run, folded from its events (DESIGN.md section 7).

Plain Python, no Textual: the monitor screen feeds it the events its reader returns and
redraws only the parts that `apply` says changed, so a test can replay a file through it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floydtui.config.flavours import builtin_label, classify_model
from floydtui.tui.lossdata import LossSeries

LOG_LINES = 500  # the log pane keeps the latest lines; the full record is events.jsonl


@dataclass(frozen=True)
class ValidationImage:
    path: Path
    prompt: str
    width: int
    height: int
    seed: int | None = None  # named when the run makes several images of each (num_validation_images)


@dataclass(frozen=True)
class ValidationSet:
    step: int
    images: tuple[ValidationImage, ...]


@dataclass(frozen=True)
class LogLine:
    t: float
    level: str  # "info" | "warning" | "error"
    message: str
    hint: str = ""


@dataclass
class Progress:
    done: int
    total: int
    rate: float

    @property
    def eta_s(self) -> float | None:
        left = self.total - self.done
        return left / self.rate if self.rate > 0 and left > 0 else (0.0 if left <= 0 else None)


@dataclass
class RunState:
    """The run as its events describe it; `apply` returns the set of parts that changed."""

    run_dir: Path
    run_id: str = ""
    flavour: str = ""
    base_model: str = ""
    model_id: str = ""  # what the preset named: a hub id, a folder, or builtin:...
    device: str = ""
    world_size: int = 1
    total_steps: int = 0
    pid: int | None = None  # the run's process, for stopping a run this monitor did not start
    host: str = ""
    phase: str = ""
    progress: dict[str, Progress] = field(default_factory=dict)
    step: int = 0
    epoch: int = 0
    loss: float | None = None
    lr: float | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None
    losses: LossSeries = field(default_factory=LossSeries)
    validations: list[ValidationSet] = field(default_factory=list)
    last_checkpoint: str = ""
    logs: deque = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    log_total: int = 0  # lines ever logged, so a reader of `logs` knows how many are new
    status: str = ""  # "" while running; completed / failed / stopped at run_end
    end_detail: str = ""
    started: bool = False

    @property
    def model_name(self) -> str:
        """The model that trains, in words: the built-in tiny model, a local folder, or a hub id."""
        model_id = self.model_id or self.base_model
        if not model_id:  # no run_start yet
            return ""
        kind = classify_model(model_id).kind
        if kind == "builtin":  # the pretrained ones say so: they are not random miniatures
            learned = ", pretrained on the shapes world" if "shapes world" in builtin_label(model_id) else ""
            return f"built-in tiny model ({model_id}{learned})"
        return f"folder {model_id}" if kind == "local" else model_id

    @property
    def builtin(self) -> bool:
        """The run trains a built-in model (the monitor shows its name in bold)."""
        return classify_model(self.model_id).kind == "builtin" if self.model_id else False

    @property
    def running(self) -> bool:
        """Started and not ended, as far as the events say."""
        return self.started and not self.status

    def apply(self, events: list[dict[str, Any]]) -> set[str]:
        """Fold events in; returns which parts changed: stats, loss, progress, validation, log, end."""
        changed: set[str] = set()
        for ev in events:
            handler = getattr(self, f"_on_{ev.get('type')}", None)
            if handler is not None:
                try:
                    changed |= handler(ev)
                except (TypeError, ValueError, KeyError):
                    self._log(ev, "warning", f"unreadable {ev.get('type')} event: {ev}")
                    changed.add("log")
        return changed

    def new_logs(self, seen: int) -> list[LogLine]:
        """The lines logged after the first `seen` (those still kept)."""
        fresh = min(self.log_total - seen, len(self.logs))
        return list(self.logs)[len(self.logs) - fresh:] if fresh > 0 else []

    def _log(self, ev: dict, level: str, message: str, hint: str = "") -> None:
        self.logs.append(LogLine(float(ev.get("t") or time.time()), level, message, hint))
        self.log_total += 1

    def _on_run_start(self, ev: dict) -> set[str]:
        self.started, self.status, self.end_detail = True, "", ""
        self.run_id = str(ev.get("run_id", ""))
        self.flavour = str(ev.get("flavour", ""))
        self.base_model = str(ev.get("base_model", ""))
        self.model_id = str(ev.get("model_id", ""))
        self.device = str(ev.get("device", ""))
        self.world_size = int(ev.get("world_size") or 1)
        self.total_steps = int(ev.get("total_steps") or 0)
        self.pid = int(ev["pid"]) if ev.get("pid") else None
        self.host = str(ev.get("host", ""))
        self._log(ev, "info", f"run {self.run_id} started: {self.flavour} on {self.device}, "
                              f"{self.total_steps} steps, base {self.model_name}")
        return {"stats", "log"}

    def _on_phase(self, ev: dict) -> set[str]:
        self.phase = str(ev["name"])
        self._log(ev, "info", f"phase: {self.phase}")
        return {"stats", "log", "progress"}

    def _on_progress(self, ev: dict) -> set[str]:
        self.progress[str(ev["phase"])] = Progress(int(ev["done"]), int(ev["total"]), float(ev.get("rate") or 0))
        return {"progress"}

    def _on_step(self, ev: dict) -> set[str]:
        self.step = int(ev["step"])
        self.epoch = int(ev.get("epoch") or 0)
        self.loss = float(ev["loss"])
        self.lr = _num(ev.get("lr"))
        self.samples_per_s = _num(ev.get("samples_per_s"))
        self.eta_s = _num(ev.get("eta_s"))
        self.losses.add(self.step, self.loss)
        return {"stats", "loss"}

    def _on_validation(self, ev: dict) -> set[str]:
        listed = ev.get("images", [])
        several = len({_seed(img.get("seed")) for img in listed}) > 1  # one seed: nothing to tell them apart by
        images = tuple(
            ValidationImage(self._resolve(img["path"]), str(img.get("prompt", "")), int(img.get("width") or 0),
                            int(img.get("height") or 0), _seed(img.get("seed")) if several else None)
            for img in listed
        )
        step = int(ev["step"])
        self.validations = [v for v in self.validations if v.step != step]
        self.validations.append(ValidationSet(step, images))
        self.validations.sort(key=lambda v: v.step)
        self._log(ev, "info", f"validation at step {step}: {len(images)} image(s)")
        return {"validation", "log"}

    def _on_checkpoint(self, ev: dict) -> set[str]:
        self.last_checkpoint = str(ev.get("path", ""))
        self._log(ev, "info", f"checkpoint at step {ev['step']}: {self.last_checkpoint}")
        return {"stats", "log"}

    def _on_warning(self, ev: dict) -> set[str]:
        self._log(ev, "warning", str(ev.get("message", "")), str(ev.get("hint", "")))
        return {"log"}

    def _on_error(self, ev: dict) -> set[str]:
        self._log(ev, "error", str(ev.get("message", "")), str(ev.get("hint", "")))
        return {"log"}

    def _on_run_end(self, ev: dict) -> set[str]:
        self.status = str(ev.get("status", "completed"))
        self.end_detail = str(ev.get("lora_path") or ev.get("error") or "")
        level = "info" if self.status == "completed" else ("warning" if self.status == "stopped" else "error")
        self._log(ev, level, f"run {self.status}" + (f": {self.end_detail}" if self.end_detail else ""))
        return {"stats", "log", "end"}

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.run_dir / p


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _seed(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def format_duration(seconds: float | None) -> str:
    """"1h02m", "3m05s", "42s", or "—" when unknown."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
