"""A training run as a child process: `floydtui run PRESET --json`, in its own session.

Its own session (start_new_session) keeps it out of the terminal's process group, so a
Ctrl+C in the TUI, the TUI crashing or the SSH session closing never reaches it; only
`stop()` does, with SIGINT, which the trainer answers by saving a checkpoint (exit 130).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

LOG_NAME = "floydtui-run.log"  # the child's stderr, for when it dies before writing run_end


class RunProcess:
    """Starts, waits for and stops one `floydtui run`."""

    def __init__(self, preset_path: Path, run_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.preset_path = Path(preset_path)
        self.run_dir = Path(run_dir)
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "floydtui", "run", str(self.preset_path), "--json", *self.extra_args]

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_NAME

    def start(self) -> int:
        """Start the run; returns its pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=log, cwd=self.preset_path.parent, start_new_session=True)
        return self.proc.pid

    def poll(self) -> int | None:
        """The exit code once the run has ended, else None (never blocks: the app may close first)."""
        return self.proc.poll() if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGINT to the run's process group: the trainer saves a checkpoint and exits 130."""
        if self.alive:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def log_tail(self, lines: int = 12) -> str:
        """The end of the child's stderr."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


class AttachedRun:
    """A run this monitor did not start (`floydtui watch`), known by run_start's pid and host."""

    def __init__(self, pid: int, host: str) -> None:
        self.pid = pid
        self.host = host

    @property
    def alive(self) -> bool:
        """On this machine and still running; a run on another host can't be signalled from here."""
        if self.host and self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's process: alive, but not ours to stop
            return False
        return True

    def stop(self) -> None:
        """SIGINT to the run's process group, as Ctrl+C in its terminal would: checkpoint, exit 130.

        When the watcher shares that group (both started by one script without job control),
        only the run's own process is signalled, so the watcher and the script live on.
        """
        try:
            group = os.getpgid(self.pid)
            if group == os.getpgrp():
                os.kill(self.pid, signal.SIGINT)
            else:
                os.killpg(group, signal.SIGINT)
        except ProcessLookupError:
            pass
