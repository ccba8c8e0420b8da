"""The event stream between a run and whoever watches it (DESIGN.md section 7).

`EventWriter` appends one JSON object a line to `events.jsonl`, flushed per line.
`EventReader` follows a growing file and tolerates a cut last line: it only returns
lines that end in a newline, keeping the rest for the next poll.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Iterator

EVENT_TYPES = ("run_start", "phase", "progress", "step", "validation", "checkpoint", "warning", "error",
               "run_end")
PHASES = ("download", "scan", "embed_cache", "train", "validate", "save")


class EventWriter:
    """Writes events to `events.jsonl`, and to stdout as JSON lines when `echo_json`."""

    def __init__(self, path: str | os.PathLike | None, echo_json: bool = False,
                 stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.path = Path(path) if path else None
        self.enabled = enabled  # False on non-main processes: only rank 0 writes
        self.echo_json = echo_json
        self.stream = stream or sys.stdout
        self._file: IO[str] | None = None
        self.listeners: list = []  # callables(event) for progress bars
        if self.path and enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")

    def emit(self, type_: str, **fields: Any) -> dict[str, Any]:
        # the names are the contract (DESIGN.md section 7) that watchers read: a new one is a bug here
        if type_ not in EVENT_TYPES or (type_ == "phase" and fields.get("name") not in PHASES):
            raise ValueError(f"not a contract event: {type_} {fields.get('name', '')}".strip())
        event = {"t": round(time.time(), 3), "type": type_, **fields}
        if not self.enabled:
            return event
        line = json.dumps(event, ensure_ascii=False, default=str)
        if self._file:
            self._file.write(line + "\n")
            self._file.flush()
        if self.echo_json:
            self.stream.write(line + "\n")
            self.stream.flush()
        for listener in self.listeners:
            listener(event)
        return event

    def warning(self, message: str, hint: str = "") -> None:
        self.emit("warning", message=message, hint=hint)

    def error(self, message: str, hint: str = "") -> None:
        self.emit("error", message=message, hint=hint)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventReader:
    """Follows an events file; `poll()` returns the new complete events since the last call."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self._inode: int | None = None

    def poll(self) -> list[dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        if self._inode is not None and (st.st_ino != self._inode or st.st_size < self._offset):
            self._offset, self._partial = 0, b""  # the file was replaced: start over
        self._inode = st.st_ino
        if st.st_size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an incomplete last line waits for its newline
        events = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue  # a corrupted line is skipped, never fatal
            if isinstance(obj, dict) and "type" in obj:
                events.append(obj)
        return events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.poll()


def read_events(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete event in a file, for tests and `watch` of a finished run."""
    return EventReader(path).poll()
