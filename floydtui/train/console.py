"""How `floydtui run` shows a run without --json: rich progress bars on a terminal, plain
lines otherwise (logs, pipes, CI). It is a listener on the EventWriter, so it shows the
same events the TUI reads from events.jsonl.
"""

from __future__ import annotations

import sys
import time
from typing import Any

_PLAIN_STEP_EVERY_S = 5.0  # plain mode: a step line at most this often (and the first and last)


class ConsoleView:
    """Renders events: bars for scan / embed cache / training on a tty, lines elsewhere."""

    def __init__(self, stream=None) -> None:
        from rich.console import Console

        self.stream = stream or sys.stderr
        self.console = Console(file=self.stream)
        self.tty = self.console.is_terminal
        self.progress = None
        self.tasks: dict[str, Any] = {}
        self.total_steps = 0
        self._last_line = 0.0
        self.last_error: str | None = None  # run_end repeats it; it is shown once, with its fix
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=self.console)
            self.progress.start()

    def __call__(self, event: dict[str, Any]) -> None:
        handler = getattr(self, "on_" + event["type"], None)
        if handler:
            handler(event)

    def say(self, text: str) -> None:
        if self.progress:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def bar(self, name: str, done: float, total: float, info: str = "") -> None:
        if not self.progress:
            return
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total or None, info=info)
        self.progress.update(self.tasks[name], completed=done, total=total or None, info=info)

    # ---- events ----
    def on_run_start(self, e: dict) -> None:
        self.total_steps = e["total_steps"]
        self.say(f"training {e['flavour']} on {e['base_model']}: {e['total_steps']} steps, "
                 f"{e['world_size']} process(es), {e['device']}")
        if e.get("note"):
            self.say(f"  note: {e['note']}")

    def on_phase(self, e: dict) -> None:
        if not self.progress:
            self.say(f"-- {e['name']}")

    def on_progress(self, e: dict) -> None:
        if e["total"] == 0:  # nothing to do: everything was cached by an earlier run
            self.bar(e["phase"], 1, 1, "all cached")
            return
        self.bar(e["phase"], e["done"], e["total"], f"{e['rate']:.1f}/s")
        if not self.progress and e["done"] == e["total"] and e["total"]:
            self.say(f"{e['phase']}: {e['done']}/{e['total']} ({e['rate']:.1f}/s)")

    def on_step(self, e: dict) -> None:
        info = f"loss {e['loss']:.4f}  lr {e['lr']:.2e}  {e['samples_per_s']:.1f} samples/s"
        self.bar("train", e["step"], self.total_steps, info)
        now = time.monotonic()
        if not self.progress and (now - self._last_line >= _PLAIN_STEP_EVERY_S or e["step"] in (1, self.total_steps)):
            self._last_line = now
            self.say(f"step {e['step']}/{self.total_steps} epoch {e['epoch']} {info} eta {e['eta_s']:.0f}s")

    def on_checkpoint(self, e: dict) -> None:
        self.say(f"checkpoint at step {e['step']}: {e['path']}")

    def on_validation(self, e: dict) -> None:
        folder = e["images"][0]["path"].rsplit("/", 1)[0] if e["images"] else ""
        self.say(f"validation at step {e['step']}: {len(e['images'])} image(s) in {folder}")

    def on_warning(self, e: dict) -> None:
        self.say(f"warning: {e['message']}" + (f"\n  fix: {e['hint']}" if e.get("hint") else ""))

    def on_error(self, e: dict) -> None:
        self.last_error = e["message"]
        self.say(f"error: {e['message']}" + (f"\n  fix: {e['hint']}" if e.get("hint") else ""))

    def on_run_end(self, e: dict) -> None:
        if e["status"] == "completed":
            self.say(f"done: {e['lora_path']}")
        elif e["status"] == "stopped":
            self.say("stopped after a checkpoint: run the same command again to continue")
        elif e.get("error") and e.get("error") == self.last_error:
            self.say("failed: the error above stopped the run")
        else:
            self.say(f"failed: {e.get('error', '')}")

    def close(self) -> None:
        if self.progress:
            self.progress.stop()
