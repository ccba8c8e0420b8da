"""A run's reports to trackers (TensorBoard, Weights & Biases) and webhooks (Discord, raw JSON).

`Reporter` listens to the run's events (it is an `EventWriter` listener on rank 0): the
events are the one record of a run, and trackers and webhooks are views of them, like the
monitor. Per step the trackers get loss, lr and samples/s; per validation the images with
their prompts; at the start the resolved preset as the run's config. Trackers are
accelerate's own (`accelerate.tracking`), logging under OUTPUT_DIR/logs/ so that
`tensorboard --logdir OUTPUT_DIR` finds them.

Webhooks get run start, each validation (Discord: with the first image), checkpoints,
warnings and errors, and the run's end. They go out from one background thread with a short
timeout and a bounded queue: a slow or dead endpoint never holds up or stops training. A
failure is one warning in events.jsonl per endpoint and kind of failure, never a crash, and
never names the URL (URLs are secrets).
"""

from __future__ import annotations

import json
import netrc
import os
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floydtui.config.preset import Preset
from floydtui.config.reporting import (WebhookEndpoint, read_webhook_config, reporting_problems, requested_trackers,
                                       webhook_source)
from floydtui.errors import FloydError
from floydtui.events import EventWriter

TIMEOUT_S = 5.0  # per webhook request
QUEUE_SIZE = 32  # messages waiting for the webhook thread; more are dropped (and said so once)
CLOSE_WAIT_S = 10.0  # how long the run's end waits for webhook messages still queued
DISCORD_LIMIT = 2000  # characters of a Discord message
USER_AGENT = "floydtui (webhooks)"  # Discord's edge refuses urllib's default agent


# ---- webhooks ------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookMessage:
    """One message for every endpoint whose log_level takes `level`."""

    kind: str  # run_start, validation, checkpoint, warning, error, run_end
    level: str  # SimpleTuner's levels: error, warning, info
    text: str  # the human line: Discord's content, raw's "message"
    fields: dict[str, Any] = field(default_factory=dict)  # raw's JSON fields
    image: Path | None = None  # attached where the target takes files (Discord)


def webhook_request(endpoint: WebhookEndpoint, message: WebhookMessage, *, prefix: str,
                    job_id: str) -> tuple[bytes, str]:
    """The POST body and its content type, in the shape of SimpleTuner's webhook handler."""
    if endpoint.type == "raw":
        body = {"message_type": message.kind, "message": message.text, "level": message.level, "job_id": job_id,
                "timestamp": int(time.time()), **message.fields}
        return json.dumps(body, default=str).encode(), "application/json"
    label = endpoint.message_prefix if endpoint.message_prefix is not None else prefix
    content = f"`({label})` {message.text}"[:DISCORD_LIMIT]
    if message.image is None or not message.image.is_file():
        return json.dumps({"content": content}).encode(), "application/json"
    boundary = uuid.uuid4().hex
    parts = [
        (f'--{boundary}\r\nContent-Disposition: form-data; name="payload_json"\r\n'
         f"Content-Type: application/json\r\n\r\n").encode() + json.dumps({"content": content}).encode() + b"\r\n",
        (f'--{boundary}\r\nContent-Disposition: form-data; name="files[0]"; filename="{message.image.name}"\r\n'
         f"Content-Type: image/png\r\n\r\n").encode() + message.image.read_bytes() + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def failure_kind(exc: BaseException, timeout: float) -> str:
    """What went wrong, in words that never include the URL."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"the endpoint answered HTTP {exc.code}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "its host name does not resolve"
    if isinstance(reason, OSError):
        return f"cannot reach it ({type(reason).__name__})"
    return f"sending failed ({type(exc).__name__})"


class WebhookSender:
    """Posts messages from one daemon thread; `send` never blocks and never raises."""

    def __init__(self, endpoints: list[WebhookEndpoint], *, prefix: str, timeout: float = TIMEOUT_S,
                 queue_size: int = QUEUE_SIZE) -> None:
        self.endpoints, self.prefix, self.timeout = endpoints, prefix, timeout
        self.job_id = ""
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._seen: set[tuple[int, str]] = set()
        self._failures: list[tuple[WebhookEndpoint | None, str]] = []
        self._thread = threading.Thread(target=self._work, name="floydtui-webhooks", daemon=True)
        self._thread.start()

    def send(self, message: WebhookMessage) -> None:
        for endpoint in self.endpoints:
            if not endpoint.wants(message.level):
                continue
            try:
                self._queue.put_nowait((endpoint, message))
            except queue.Full:
                self._fail(endpoint, "messages were dropped: it is slower than the run sends them")

    def take_failures(self) -> list[tuple[WebhookEndpoint | None, str]]:
        """Failures not reported yet, each (endpoint, kind) once for the whole run."""
        with self._lock:
            failures, self._failures = self._failures, []
        return failures

    def close(self, wait: float = CLOSE_WAIT_S) -> None:
        """Let the queue drain for up to `wait` seconds; what is left is given up (and said so)."""
        self._closing.set()
        self._thread.join(wait)
        if self._thread.is_alive():
            left = self._queue.qsize() + 1
            self._fail(None, f"{left} message(s) not delivered within {wait:g} s of the run's end")

    def _fail(self, endpoint: WebhookEndpoint | None, kind: str) -> None:
        with self._lock:
            key = (endpoint.index if endpoint else -1, kind)
            if key not in self._seen:
                self._seen.add(key)
                self._failures.append((endpoint, kind))

    def _work(self) -> None:
        while True:
            try:
                endpoint, message = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            try:
                body, content_type = webhook_request(endpoint, message, prefix=self.prefix, job_id=self.job_id)
                request = urllib.request.Request(endpoint.url, data=body, method="POST",
                                                 headers={"Content-Type": content_type, "User-Agent": USER_AGENT})
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read(4096)
            except Exception as e:  # any failure of any kind is a warning, never the run's end
                self._fail(endpoint, failure_kind(e, self.timeout))


# ---- trackers ------------------------------------------------------------------------
def run_config(preset: Preset) -> dict[str, Any]:
    """The resolved preset, flat (key -> bool/int/float/str) as trackers store a run's config.

    Lists and datasets become JSON text; webhook_config is only said to be there (URLs are secrets).
    """
    config: dict[str, Any] = {}
    for table in ("model", "training", "validation", "output"):
        for key, value in getattr(preset, table).items():
            config[key] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    config["webhook_config"] = webhook_source(preset.output["webhook_config"])
    for ds in preset.datasets:
        config[f"dataset.{ds['id']}"] = json.dumps({k: v for k, v in ds.items() if k != "extra"}, default=str)
    return config


def wandb_logged_in() -> bool:
    """Whether wandb has a key (WANDB_API_KEY, or the netrc entry `wandb login` writes), without asking for one."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import wandb

    try:  # the host `wandb login` saved the key for (versions differ in their default)
        base_url = wandb.Settings().base_url
    except Exception:
        base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = str(base_url).split("://")[-1].split("/")[0]
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


# ---- the reporter --------------------------------------------------------------------
class Reporter:
    """Turns a run's events into tracker logs and webhook messages (rank 0 only).

    Attach with `Reporter.for_run`; call `finish` before the run_end event (its webhook
    message goes out and failures become warnings while the event stream is still open),
    and `close` in a `finally`.
    """

    def __init__(self, preset: Preset, events: EventWriter, trackers: list[str],
                 endpoints: list[WebhookEndpoint]) -> None:
        self.preset, self.events = preset, events
        self.wanted = trackers
        self.trackers: list[Any] = []
        out = preset.output
        self.project = out["tracker_project_name"]
        self.run_name = out["tracker_run_name"]
        self.logs = preset.output_dir / "logs"
        self.sender = WebhookSender(endpoints, prefix=f"{self.project} {self.run_name}") if endpoints else None
        self.started: float | None = None
        self.step, self.loss = 0, None
        self._own = False  # while the reporter writes its own warnings, which are not reported on
        self._warned: set[str] = set()
        self._done = False

    @classmethod
    def for_run(cls, preset: Preset, events: EventWriter) -> "Reporter | None":
        """A reporter listening to `events`, or None when the preset reports nowhere.

        Raises FloydError for what `check` reports as errors (a tracker not installed, a bad
        webhook file), before any training.
        """
        out = preset.output
        errors = [p for p in reporting_problems(out["report_to"], out["webhook_config"], preset.base_dir)
                  if p.is_error]
        if errors:
            raise FloydError(errors)
        trackers = requested_trackers(out["report_to"])
        endpoints = read_webhook_config(out["webhook_config"], preset.base_dir)
        if not trackers and not endpoints:
            return None
        reporter = cls(preset, events, trackers, endpoints)
        events.listeners.append(reporter)
        return reporter

    # ---- events in -----------------------------------------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        if self._own or self._done:
            return
        handler = getattr(self, f"_on_{event['type']}", None)
        if handler:
            self._guarded(event["type"], handler, event)
        self._report_failures()

    def _on_run_start(self, e: dict[str, Any]) -> None:
        self.started = e["t"]
        if self.sender:
            self.sender.job_id = e.get("run_id", "")
        self._start_trackers()
        self._send(WebhookMessage(
            "run_start", "info",
            f"run started: {e['flavour']} on {e['base_model']}, {e['total_steps']} steps, "
            f"{e['world_size']} process(es) on {e['device']}",
            {k: e.get(k) for k in ("run_id", "flavour", "base_model", "total_steps", "world_size", "device")}
            | {"output_dir": str(self.preset.output_dir)}))

    def _on_step(self, e: dict[str, Any]) -> None:
        self.step, self.loss = e["step"], e["loss"]
        values = {"train/loss": e["loss"], "train/lr": e["lr"], "train/samples_per_s": e["samples_per_s"]}
        for tracker in list(self.trackers):
            self._guarded(tracker.name, tracker.log, values, step=e["step"])

    def _on_validation(self, e: dict[str, Any]) -> None:
        images = e["images"]
        for tracker in list(self.trackers):
            self._guarded(tracker.name, self._log_images, tracker, images, e["step"])
        first = Path(images[0]["path"]) if images else None
        self._send(WebhookMessage(
            "validation", "info",
            f"validation at step {e['step']}: {len(images)} image(s)" +
            (f", first: \"{images[0]['prompt']}\" {images[0]['width']}x{images[0]['height']}" if images else ""),
            {"step": e["step"], "images": images}, image=first))

    def _on_checkpoint(self, e: dict[str, Any]) -> None:
        self._send(WebhookMessage("checkpoint", "info", f"checkpoint at step {e['step']}: {e['path']}",
                                  {"step": e["step"], "path": e["path"]}))

    def _on_warning(self, e: dict[str, Any]) -> None:
        self._send(WebhookMessage("warning", "warning", _with_hint("warning", e),
                                  {"message": e.get("message", ""), "hint": e.get("hint", "")}))

    def _on_error(self, e: dict[str, Any]) -> None:
        self._send(WebhookMessage("error", "error", _with_hint("error", e),
                                  {"message": e.get("message", ""), "hint": e.get("hint", "")}))

    # ---- the end -------------------------------------------------------------------
    def finish(self, status: str, *, lora_path: str | None = None, error: str | None = None) -> None:
        """Send the end message, close the trackers, wait (bounded) for webhooks; failures become warnings."""
        if self._done:
            return
        wall = round(time.time() - self.started, 1) if self.started else None
        loss = f"{self.loss:.4f}" if self.loss is not None else "none"
        text = f"run {status} after {self.step} step(s), final loss {loss}" + \
            (f", {wall:g} s" if wall is not None else "") + (f"; LoRA: {lora_path}" if lora_path else "") + \
            (f"; error: {error}" if error else "")
        self._send(WebhookMessage("run_end", "error" if status == "failed" else "info", text,
                                  {"status": status, "steps": self.step, "final_loss": self.loss,
                                   "lora_path": lora_path, "wall_time_s": wall, "error": error}))
        self.close()

    def close(self) -> None:
        """Stop trackers and the webhook thread (idempotent); failures so far become warnings."""
        if self._done:
            return
        self._done = True  # first: a Ctrl-C while the webhooks drain must not start a second end
        for tracker in self.trackers:
            self._guarded(tracker.name, tracker.finish)
        self.trackers = []
        if self.sender:
            self.sender.close()
        self._report_failures()

    # ---- helpers -------------------------------------------------------------------
    def _start_trackers(self) -> None:
        from accelerate.tracking import TensorBoardTracker, WandBTracker

        config = run_config(self.preset)
        for name in self.wanted:
            try:
                if name == "tensorboard":
                    tracker = TensorBoardTracker(self.project, self.logs)
                else:
                    tracker = WandBTracker(self.project, **self._wandb_kwargs())
                tracker.start()
                tracker.store_init_configuration(config)
                self.trackers.append(tracker)
            except Exception as e:
                self._warn(f"{name} did not start ({_first_line(e)}); the run goes on without it",
                           ("set WANDB_MODE=offline to log locally and `wandb sync` later; " if name == "wandb"
                            else "") + "events.jsonl and the monitor have everything; see docs/reporting.md")

    def _wandb_kwargs(self) -> dict[str, Any]:
        import wandb

        self.logs.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"name": self.run_name, "dir": str(self.logs)}
        try:  # a dead network fails in half a minute instead of wandb's 90 s
            kwargs["settings"] = wandb.Settings(init_timeout=30)
        except Exception:
            pass
        if not os.environ.get("WANDB_MODE") and not wandb_logged_in():
            kwargs["mode"] = "offline"
            self._warn(f"wandb: not logged in, so this run logs offline to {self.logs / 'wandb'}",
                       "run `wandb login` (or set WANDB_API_KEY) for the next run; upload this one with "
                       f"`wandb sync {self.logs / 'wandb'}/offline-run-*`")
        return kwargs

    def _log_images(self, tracker, images: list[dict[str, Any]], step: int) -> None:
        import numpy as np
        from PIL import Image

        several = len({im.get("seed") for im in images}) > 1  # num_validation_images > 1: tags say the seed
        for i, image in enumerate(images):
            pixels = np.asarray(Image.open(image["path"]).convert("RGB"))
            seed = f", seed {image['seed']}" if several else ""
            tag = f"validation/{i:02d} {image['prompt'].replace('/', ' ')} ({image['width']}x{image['height']}{seed})"
            if tracker.name == "wandb":
                import wandb

                tracker.log({tag: wandb.Image(pixels, caption=image["prompt"])}, step=step)
            else:
                tracker.log_images({tag: pixels[None]}, step=step, dataformats="NHWC")

    def _send(self, message: WebhookMessage) -> None:
        if self.sender:
            self.sender.send(message)

    def _guarded(self, what: str, fn, *args, **kwargs) -> None:
        """Reporting never stops training: a failure is one warning per kind of report."""
        try:
            fn(*args, **kwargs)
        except Exception as e:
            if what in ("tensorboard", "wandb"):
                self.trackers = [t for t in self.trackers if t.name != what]
            self._warn(f"reporting to {what} failed ({_first_line(e)}); the run goes on without it",
                       "events.jsonl and the monitor have everything")

    def _report_failures(self) -> None:
        if not self.sender:
            return
        for endpoint, kind in self.sender.take_failures():
            who = endpoint.label if endpoint else "webhooks"
            self._warn(f"{who}: {kind}; training goes on, and this is not repeated for this endpoint and failure",
                       "check the endpoint in webhook_config; webhooks are sent in the background with a "
                       f"{TIMEOUT_S:g} s timeout and never hold up a run")

    def _warn(self, message: str, hint: str) -> None:
        if message in self._warned:
            return
        self._warned.add(message)
        self._own = True
        try:
            self.events.warning(message, hint)
        finally:
            self._own = False


def _with_hint(level: str, e: dict[str, Any]) -> str:
    return f"{level}: {e.get('message', '')}" + (f" (fix: {e['hint']})" if e.get("hint") else "")
