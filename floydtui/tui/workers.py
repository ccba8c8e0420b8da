"""What happens when a background worker fails: one handler, mixed into every node that runs workers.

Textual posts `Worker.StateChanged` to the node that started the worker only (it does not
bubble), so the handler lives in a mixin rather than on the app. A failed worker's error
is shown as a notification, and the node's `worker_failed` clears whatever "working…"
state it showed, so nothing says "Checking…" forever.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState

from floydtui.errors import FloydError


class WorkerFailures:
    """Mixin for a Widget or Screen: notify a failed worker's error, then call `worker_failed`."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """(Named, not @on: Textual collects @on handlers only from classes with its metaclass.)"""
        if event.state != WorkerState.ERROR:
            return
        worker, error = event.worker, event.worker.error
        if isinstance(error, FloydError):
            text = "\n".join(p.message + (f"\nfix: {p.hint}" if p.hint else "") for p in error.problems)
        else:
            text = f"{type(error).__name__}: {error}"
        self.notify(f"{describe(worker)} failed: {text}", severity="error", timeout=12)
        self.worker_failed(worker, error)

    def worker_failed(self, worker: Worker, error: BaseException | None) -> None:
        """Clear the "working" state the failed worker's node shows (override)."""


def describe(worker: Worker) -> str:
    """A worker's name for a message: its group, in words."""
    return (worker.group or worker.name or "a background task").replace("-", " ").replace("_", " ").capitalize()
