"""SimpleTuner interop: `floydtui import` and `floydtui export`.

SimpleTuner takes a flat `config.json` (or `config.toml`, or a `config.env` of
`export KEY=value` lines; keys with or without a leading `--`) plus a
`multidatabackend.json` list of datasets. A preset's tables flatten to exactly that.
Keys floydtui does not use are kept in `[extra]` (and come back out on export), never
dropped. floydtui's own keys that SimpleTuner lacks travel in a `floydtui.json` sidecar.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from floydtui.config.preset import Preset, dump_toml, preset_from_dict
from floydtui.config.reporting import webhook_source
from floydtui.config.schema import DATASET_FIELD_BY_KEY, FIELD_BY_KEY, Field
from floydtui.errors import FloydError, Problem
from floydtui.fsutil import atomic_write_text

SIDECAR = "floydtui.json"

# The legacy MODEL_TYPE values of SimpleTuner's config.env: (model_type, stage).
LEGACY_MODEL_TYPES = {
    "deepfloyd-lora": ("lora", 1),
    "deepfloyd-full": ("full", 1),
    "deepfloyd-stage2-lora": ("lora", 2),
    "deepfloyd-stage2": ("full", 2),
}
_DEFAULT_FLAVOUR = {1: "i-medium-400m", 2: "ii-medium-450m"}

# Upper-case names of the old config.env format that differ from the argument names.
ENV_ALIASES = {
    "MODEL_NAME": "pretrained_model_name_or_path",
    "DATALOADER_CONFIG": "data_backend_config",
    "MAX_NUM_STEPS": "max_train_steps",
    "NUM_EPOCHS": "num_train_epochs",
    "CHECKPOINTING_LIMIT": "checkpoints_total_limit",
    "LR_SCHEDULE": "lr_scheduler",
    "LR_WARMUP_STEPS": "lr_warmup_steps",
    "TRAINING_SEED": "seed",
    "VALIDATION_NEGATIVE_PROMPT": "validation_negative_prompt",
    "GRADIENT_ACCUMULATION_STEPS": "gradient_accumulation_steps",
}


# ---- reading SimpleTuner files ---------------------------------------------
def _strip_dashes(key: str) -> str:
    return key.lstrip("-").strip()


def read_simpletuner_config(path: Path) -> dict[str, Any]:
    """A SimpleTuner config file as a flat dict of argument names to values."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FloydError.one(f"cannot read {path}: {e.strerror or e}", hint="check the path")
    except UnicodeDecodeError as e:
        raise FloydError.one(f"{path} is not UTF-8 text (byte {e.start})", where=str(path),
                             hint="pass SimpleTuner's config.json / config.toml / config.env, saved as UTF-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise FloydError.one(f"JSON syntax error: {e.msg}", where=f"{path}:{e.lineno}:{e.colno}",
                                 hint="fix the JSON at that line and column")
        if isinstance(data, list):
            return {"__datasets__": data}
        if not isinstance(data, dict):
            raise FloydError.one("a SimpleTuner config.json is an object of keys", where=str(path))
        return {_strip_dashes(k): v for k, v in data.items()}
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise FloydError.one(f"TOML syntax error: {e}", where=str(path), hint="fix the TOML syntax")
        return {_strip_dashes(k): v for k, v in data.items()}
    return _read_env(text, path)


def _read_env(text: str, path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        key, sep, value = line.partition("=")
        if not sep:
            raise FloydError.one(f"line {n} is not KEY=value: {line!r}", where=f"{path}:{n}",
                                 hint="config.env lines look like: export LEARNING_RATE=4e-5")
        try:
            parts = shlex.split(value, comments=True)
        except ValueError as e:
            raise FloydError.one(f"line {n}: {e}", where=f"{path}:{n}", hint="check the quotes on that line")
        value = " ".join(parts)
        key = key.strip()
        if key == "TRAINER_EXTRA_ARGS":
            out.update(_parse_extra_args(value))
            continue
        name = ENV_ALIASES.get(key, key.lower())
        out[_strip_dashes(name)] = value
    return out


def _parse_extra_args(value: str) -> dict[str, Any]:
    """`--flag --key=value --key value` as SimpleTuner's TRAINER_EXTRA_ARGS holds them."""
    out: dict[str, Any] = {}
    tokens = shlex.split(value)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            key, sep, val = tok[2:].partition("=")
            if sep:
                out[key] = val
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                out[key] = tokens[i + 1]
                i += 1
            else:
                out[key] = True
        i += 1
    return out


def _coerce(f: Field, value: Any) -> Any:
    """SimpleTuner values often arrive as strings ("4e-5", "true"): give them the field's type."""
    if not isinstance(value, str):
        if f.type is bool or isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer() and f.type is int:
            return int(value)
        return value
    types = f.type if isinstance(f.type, tuple) else (f.type,)
    v = value.strip()
    if bool in types and v.lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.lower() in ("true", "1", "yes")
    if int in types:
        try:
            return int(v)
        except ValueError:
            pass
    if float in types:
        try:
            return float(v)
        except ValueError:
            pass
    if list in types and str not in types:  # webhook_config: a string is a file path or JSON, not a list
        return [s.strip() for s in v.split(",") if s.strip()]
    return value


def import_simpletuner(sources: list[str | Path]) -> tuple[dict[str, Any], list[Problem]]:
    """SimpleTuner files to a preset dict (validated), plus notes and warnings."""
    flat: dict[str, Any] = {}
    datasets: list[dict] | None = None
    notes: list[Problem] = []
    paths = [Path(s) for s in sources]
    sidecar: dict[str, Any] = {}
    for path in paths:
        data = read_simpletuner_config(path)
        if "__datasets__" in data:
            datasets = data["__datasets__"]
        else:
            flat.update(data)
            side = path.parent / SIDECAR
            if side.exists() and side not in paths:
                sidecar.update(read_simpletuner_config(side))
    flat.update(sidecar)
    backend = flat.pop("data_backend_config", None)
    if datasets is None and backend:
        bpath = Path(backend)
        candidates = [bpath] if bpath.is_absolute() else [Path.cwd() / bpath, *(p.parent / bpath for p in paths)]
        found = next((c for c in candidates if c.exists()), None)
        if not found:
            raise FloydError.one(f"data_backend_config points at {backend}, which does not exist",
                                 hint="pass multidatabackend.json as another SRC argument")
        loaded = read_simpletuner_config(found)
        datasets = loaded.get("__datasets__")
        if datasets is None:
            raise FloydError.one(f"{found} is not a list of datasets", where=str(found))

    legacy = flat.get("model_type")
    if isinstance(legacy, str) and legacy in LEGACY_MODEL_TYPES:
        model_type, stage = LEGACY_MODEL_TYPES[legacy]
        flat["model_type"] = model_type
        flat.setdefault("model_family", "deepfloyd")
        flavour = flat.get("model_flavour")
        if not flavour or not str(flavour).startswith("i" * stage + "-"):
            flat["model_flavour"] = _DEFAULT_FLAVOUR[stage]
        notes.append(Problem(
            f"legacy MODEL_TYPE {legacy!r} became model_type = {model_type!r} with model_flavour = "
            f"{flat['model_flavour']!r} (stage {'I' * stage})", severity="warning", key="model_type",
            hint="check model_flavour: the legacy type names a stage, not a size"))

    tables: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:  # SimpleTuner writes null for an unset argument: floydtui's default applies
            continue
        if key in FIELD_BY_KEY:
            table, f = FIELD_BY_KEY[key]
            tables.setdefault(table, {})[key] = _coerce(f, value)
        else:
            extra[key] = value
    if extra:
        notes.append(Problem(
            f"{len(extra)} key(s) floydtui does not use were kept in [extra]: {', '.join(sorted(extra))}",
            severity="warning", key="extra", hint="they go back out on `floydtui export`"))
    preset: dict[str, Any] = {t: tables[t] for t in ("model", "training", "validation", "output") if t in tables}
    preset["datasets"] = [_import_dataset(d, notes) for d in (datasets or [])]
    if extra:
        preset["extra"] = extra
    return preset, notes


def _import_dataset(ds: Any, notes: list[Problem]) -> dict[str, Any]:
    if not isinstance(ds, dict):
        raise FloydError.one("each entry of multidatabackend.json must be an object")
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in ds.items():
        if value is None:  # unset, as in config.json
            continue
        f = DATASET_FIELD_BY_KEY.get(key)
        if f:
            out[key] = _coerce(f, value)
        else:
            extra[key] = value
    if extra:
        out["extra"] = extra
        notes.append(Problem(f"dataset {ds.get('id')!r}: kept {', '.join(sorted(extra))} in its extra table",
                             severity="warning", key="extra"))
    return out


# ---- writing SimpleTuner files -----------------------------------------------
def export_simpletuner(preset: Preset, out_dir: str | Path) -> list[Path]:
    """Write config.json + multidatabackend.json (+ floydtui.json for floydtui's own keys).

    Values go out as written, paths included: SimpleTuner reads relative paths against its
    working directory, so run it from the preset's folder (`relative_paths` tells the CLI).
    """
    out_dir = Path(out_dir)
    config: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for table in ("model", "training", "validation", "output"):
        for key, value in getattr(preset, table).items():
            f = FIELD_BY_KEY[key][1]
            if key == "webhook_config" and webhook_source(value) != "file":
                continue  # inline URLs are secrets: only a reference to a file goes out
            if f.simpletuner:
                config[key] = value
            elif value != f.default:
                own[key] = value
    backend_path = (out_dir / "multidatabackend.json").resolve()
    config["data_backend_config"] = str(backend_path)
    config.update(preset.extra)
    datasets = []
    for ds in preset.datasets:
        entry = {k: v for k, v in ds.items() if k != "extra" and v is not None}
        entry.update(ds.get("extra") or {})
        datasets.append(entry)
    written = [atomic_write_text(out_dir / "config.json", json.dumps(config, indent=2) + "\n"),
               atomic_write_text(backend_path, json.dumps(datasets, indent=2) + "\n")]
    if own:
        written.append(atomic_write_text(out_dir / SIDECAR, json.dumps(own, indent=2) + "\n"))
    return written


def write_preset_file(data: dict[str, Any], path: str | Path) -> Path:
    """Validate then write a preset dict atomically (TOML)."""
    preset_from_dict(data, source=Path(path))
    return atomic_write_text(path, dump_toml(data))


def relative_paths(preset: Preset) -> list[str]:
    """The preset's relative folders, which SimpleTuner would read against its working directory."""
    values = [preset.output["output_dir"]]
    values += [d[k] for d in preset.datasets for k in ("instance_data_dir", "cache_dir") if d.get(k)]
    if webhook_source(preset.output["webhook_config"]) == "file":
        values.append(preset.output["webhook_config"])
    return [v for v in values if not Path(v).expanduser().is_absolute()]
