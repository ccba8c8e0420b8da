"""Where a run reports besides events.jsonl: trackers (`report_to`) and webhooks (`webhook_config`).

Both use SimpleTuner's names and values. `report_to` is `none`, `tensorboard`, `wandb` or
`all` (every one of those two that is installed, as accelerate reads "all"). `webhook_config`
is SimpleTuner's: a path to a JSON file, a JSON string, or the same inline as a TOML table or
array of tables; each entry is `{"webhook_type": "discord", "webhook_url": ...}` or
`{"webhook_type": "raw", "callback_url": ...}`, with optional `message_prefix` and `log_level`.

Webhook URLs are secrets (a Discord URL is its own password): no message here ever holds
one; an endpoint is named by its position and type ("webhook #1 (discord)").
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floydtui.errors import FloydError, Problem

TRACKERS = ("tensorboard", "wandb")
REPORT_TO = ("none", *TRACKERS, "all")
WEBHOOK_URL_KEYS = {"discord": "webhook_url", "raw": "callback_url"}  # SimpleTuner's key per webhook_type
LOG_LEVELS = {"critical": 0, "error": 1, "warning": 2, "info": 3, "debug": 4}  # SimpleTuner's order


def install_hint(package: str) -> str:
    return f"pip install 'floydtui[{package}]' (in a checkout: pip install -e '.[{package}]')"


def tracker_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def requested_trackers(report_to: str) -> list[str]:
    """The trackers a run starts: `all` means those installed."""
    if report_to == "all":
        return [t for t in TRACKERS if tracker_installed(t)]
    return [report_to] if report_to in TRACKERS else []


def tracker_problems(report_to: str) -> list[Problem]:
    """A requested tracker that is not installed: an error naming the install command."""
    if report_to in TRACKERS and not tracker_installed(report_to):
        return [Problem(f"report_to = {report_to!r} but {report_to} is not installed", key="report_to",
                        hint=f"{install_hint(report_to)}, or set report_to = \"none\"")]
    if report_to == "all":
        missing = [t for t in TRACKERS if not tracker_installed(t)]
        if len(missing) == len(TRACKERS):
            return [Problem("report_to = \"all\" but neither tensorboard nor wandb is installed", key="report_to",
                            hint=f"{install_hint('tensorboard')}, or set report_to = \"none\"")]
        if missing:
            return [Problem(f"report_to = \"all\": {missing[0]} is not installed, so the run reports to "
                            f"{', '.join(requested_trackers('all'))} only", key="report_to", severity="warning",
                            hint=install_hint(missing[0]))]
    return []


@dataclass(frozen=True)
class WebhookEndpoint:
    """One target of webhook_config. `url` never appears in a message: `label` names it."""

    index: int
    type: str  # "discord" or "raw"
    url: str = field(repr=False)
    message_prefix: str | None = None
    log_level: int = LOG_LEVELS["info"]

    @property
    def label(self) -> str:
        return f"webhook #{self.index + 1} ({self.type})"

    def wants(self, level: str) -> bool:
        """SimpleTuner's filter: a message goes out when its level is at or above the entry's log_level."""
        return LOG_LEVELS[level] <= self.log_level


def webhook_source(value: Any) -> str:
    """How the preset gives webhook_config: "none", "inline" or "file"."""
    if not value:
        return "none"
    if isinstance(value, str) and not value.lstrip().startswith(("{", "[")):
        return "file"
    return "inline"


def holds_inline_webhook(data: dict[str, Any]) -> bool:
    """Whether a preset's tables hold webhook URLs inline (secrets: its file is written for its owner only)."""
    output = data.get("output")
    return isinstance(output, dict) and webhook_source(output.get("webhook_config")) == "inline"


def webhook_file(value: Any, base_dir: Path) -> Path | None:
    """The JSON file a webhook_config names (relative to the preset's folder), or None when inline."""
    if webhook_source(value) != "file":
        return None
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else (base_dir / path).resolve()


def read_webhook_config(value: Any, base_dir: Path, *, read_file: bool = True) -> list[WebhookEndpoint]:
    """The endpoints of a webhook_config value; FloydError naming what is wrong (never a URL).

    With `read_file=False` a file reference is not opened (preset loading: the file is the
    concern of `check` and of the run, as an import may name one that is not there yet).
    """
    source = webhook_source(value)
    if source == "none":
        return []
    where = "[output] webhook_config"
    if source == "file":
        path = webhook_file(value, base_dir)
        if not read_file:
            return []
        where = f"webhook_config file {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FloydError.one(f"webhook_config names {path}, which does not exist", where="[output]",
                                 key="webhook_config", hint="create it (a JSON object with webhook_type and "
                                 "webhook_url or callback_url), or fix the path (relative to the preset's folder)")
        except (OSError, UnicodeDecodeError) as e:
            raise FloydError.one(f"cannot read the webhook_config file {path}: {type(e).__name__}",
                                 where="[output]", key="webhook_config", hint="it must be a UTF-8 JSON file")
        value = _parse_json(text, where)
    elif isinstance(value, str):
        value = _parse_json(value, where)
    entries = value if isinstance(value, list) else [value]
    problems: list[Problem] = []
    endpoints = [e for i, entry in enumerate(entries) if (e := _endpoint(i, entry, where, problems))]
    if problems:
        raise FloydError(problems)
    return endpoints


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:  # the message names the position only: the text holds URLs
        raise FloydError.one(f"JSON syntax error at line {e.lineno}, column {e.colno}: {e.msg}", where=where,
                             key="webhook_config", hint="fix the JSON at that position")


def _endpoint(i: int, entry: Any, where: str, problems: list[Problem]) -> WebhookEndpoint | None:
    label = f"webhook_config entry {i + 1}"
    if not isinstance(entry, dict):
        problems.append(Problem(f"{label} must be an object with webhook_type", where=where, key="webhook_config",
                                hint='e.g. {"webhook_type": "discord", "webhook_url": "https://discord.com/api/'
                                     'webhooks/..."}'))
        return None
    kind = entry.get("webhook_type")
    if kind not in WEBHOOK_URL_KEYS:
        problems.append(Problem(f"{label}: webhook_type must be one of 'discord', 'raw', got {kind!r}"
                                if isinstance(kind, str) and len(kind) < 40 else
                                f"{label}: webhook_type must be one of 'discord', 'raw'",
                                where=where, key="webhook_config",
                                hint="discord posts messages and images to a Discord webhook_url; raw posts JSON "
                                     "to a callback_url"))
        return None
    url_key = WEBHOOK_URL_KEYS[kind]
    url = entry.get(url_key)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append(Problem(f"{label}: webhook_type {kind!r} needs {url_key}, an http(s) URL",
                                where=where, key="webhook_config", hint=f"set {url_key} in that entry"))
        return None
    level = entry.get("log_level", "info")
    if level not in LOG_LEVELS:
        problems.append(Problem(f"{label}: log_level must be one of {', '.join(LOG_LEVELS)}", where=where,
                                key="webhook_config", hint="info sends everything floydtui sends; error only "
                                                           "errors and failed runs"))
        return None
    prefix = entry.get("message_prefix")
    return WebhookEndpoint(i, kind, url, None if prefix is None else str(prefix), LOG_LEVELS[level])


def reporting_problems(report_to: str, webhook_config: Any, base_dir: Path) -> list[Problem]:
    """Everything wrong with a preset's reporting keys, for `check` and the start of a run."""
    problems = tracker_problems(report_to)
    try:
        read_webhook_config(webhook_config, base_dir)
    except FloydError as e:
        problems += e.problems
    return problems
