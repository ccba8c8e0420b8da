"""SimpleTuner interop: `floydtui import` and `floydtui export`, for SimpleTuner 4.10.1.

SimpleTuner takes a flat `config.json` (or `config.toml`, or a `config.env` of
`export KEY=value` lines; keys with or without a leading `--`) plus a
`multidatabackend.json` list of datasets. Its names, values and defaults are in
`simpletuner_4_10_1`; this module reads and writes the files. Keys floydtui does not
implement are kept in `[extra]` (and come back out on export), never dropped. floydtui's
own keys, and exact values SimpleTuner cannot say, travel in a `floydtui.json` sidecar that
names the SimpleTuner version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from floydtui.config import simpletuner_4_10_1 as st
from floydtui.config.flavours import stage_name
from floydtui.config.preset import Preset, preset_from_dict, write_preset_toml
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


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _read_env(text: str, path: Path) -> dict[str, Any]:
    """`export KEY=value` lines as SimpleTuner argument names.

    Like the shell that sourced these files, `${VAR}` / `$VAR` take the file's own earlier
    values, then the environment (not inside single quotes); ` # comments` end a value.
    Notes on what was expanded and on names SimpleTuner's loader would not read are kept
    under the "__notes__" key.
    """
    out: dict[str, Any] = {}
    notes: list[Problem] = []
    shell: dict[str, str] = {}
    shell_lines: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        key, sep, raw = line.partition("=")
        if not sep:
            raise FloydError.one(f"line {n} is not KEY=value: {line!r}", where=f"{path}:{n}",
                                 hint="config.env lines look like: export LEARNING_RATE=4e-5")
        key = key.strip()
        expanded: list[str] = []

        def expand(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            if name in shell:
                expanded.append(f"${{{name}}} (line {shell_lines[name]})")
                return shell[name]
            if name in os.environ:
                expanded.append(f"${{{name}}} (from the environment)")
                return os.environ[name]
            notes.append(Problem(f"line {n}: ${{{name}}} is not set in this file or the environment; it became ''",
                                 where=f"{path}:{n}", severity="warning", key=key.lower(),
                                 hint=f"export {name}=... before running import, or write the value in full"))
            return ""

        stripped = raw.strip()
        if not (stripped.startswith("'") and stripped.endswith("'")):
            raw = _VAR.sub(expand, raw)
        try:
            value = " ".join(shlex.split(raw, comments=True))
        except ValueError as e:
            raise FloydError.one(f"line {n}: {e}", where=f"{path}:{n}", hint="check the quotes on that line")
        if expanded:
            notes.append(Problem(f"line {n}: {key} = {value!r}, expanding {', '.join(expanded)}",
                                 where=f"{path}:{n}", severity="note", key=key.lower()))
        shell[key] = value
        shell_lines[key] = n
        if key == "TRAINER_EXTRA_ARGS":
            out.update(_parse_extra_args(value))
        elif key in st.ENV_TO_ARGS:
            arg, _, fixed = st.ENV_TO_ARGS[key].partition("=")
            if fixed:  # a switch: USE_BITFIT=true is --layer_freeze_strategy=bitfit
                if value.lower() == "true":
                    out[arg] = fixed
            else:
                out[arg] = value
        elif key in st.ENV_LEGACY:
            arg, switch = st.ENV_LEGACY[key]
            if switch is None:
                out[arg] = value
            elif value.lower() in switch:
                out[arg] = switch[value.lower()]
            notes.append(Problem(f"{key} is an older config.env name that SimpleTuner {st.VERSION} does not read; "
                                 f"imported as {arg}", where=f"{path}:{n}", severity="warning", key=arg,
                                 hint=f"export writes {arg} in config.json"))
        elif key in st.ENV_SHELL_VARIABLES:
            continue  # only ever a value for ${...} in later lines
        else:
            out[key.lower()] = value
            notes.append(Problem(f"SimpleTuner {st.VERSION}'s config.env loader does not read {key}; "
                                 f"imported as {key.lower()}", where=f"{path}:{n}", severity="warning",
                                 key=key.lower(), hint=f"in SimpleTuner put it in TRAINER_EXTRA_ARGS as "
                                 f"--{key.lower()}=...; export writes it in config.json"))
    out["__notes__"] = notes
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
    """SimpleTuner files to a preset dict, plus notes and warnings. Never refuses a partial config.

    Every argument the files leave out takes SimpleTuner's default (what the config meant
    there); what floydtui cannot do is a warning, and `floydtui check` on the written preset
    says what stops a run.
    """
    flat: dict[str, Any] = {}
    datasets: list[dict] | None = None
    notes: list[Problem] = []
    paths = [Path(s) for s in sources]
    sidecar: dict[str, Any] = {}
    origin = " + ".join(str(p) for p in paths)
    for path in paths:
        data = read_simpletuner_config(path)
        notes.extend(data.pop("__notes__", []))
        if "__datasets__" in data:
            datasets = data["__datasets__"]
        else:
            flat.update(data)
            side = path.parent / SIDECAR
            if side.exists() and side not in paths:
                sidecar.update(read_simpletuner_config(side))
    written_for = sidecar.pop("simpletuner_version", st.VERSION)
    if written_for != st.VERSION:
        notes.append(Problem(f"{SIDECAR} was written for SimpleTuner {written_for}; this floydtui reads "
                             f"{st.VERSION}'s names", where=origin, severity="warning"))
    backend = flat.pop("data_backend_config", None)
    if datasets is None and backend:
        bpath = Path(str(backend))
        candidates = [bpath] if bpath.is_absolute() else [Path.cwd() / bpath, *(p.parent / bpath for p in paths)]
        found = next((c for c in candidates if c.exists()), None)
        if found:
            datasets = read_simpletuner_config(found).get("__datasets__")
            if datasets is None:
                notes.append(Problem(f"{found} is not a list of datasets: the preset has none", where=str(found),
                                     severity="warning", key="datasets",
                                     hint="pass SimpleTuner's multidatabackend.json as another SRC argument"))
        else:
            notes.append(Problem(f"data_backend_config points at {backend}, which does not exist: the preset has "
                                 "no datasets", where=origin, severity="warning", key="datasets",
                                 hint="pass multidatabackend.json as another SRC argument"))
    elif datasets is None:
        notes.append(Problem("no multidatabackend.json: the preset has no datasets", where=origin,
                             severity="warning", key="datasets",
                             hint="add [[datasets]] to the preset (floydtui check says what is missing)"))

    for old, new in st.LEGACY_KEYS.items():
        if old in flat:
            flat.setdefault(new, flat.pop(old))
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
            f"{flat['model_flavour']!r} ({stage_name(stage)})", severity="warning", key="model_type",
            hint="check model_flavour: the legacy type names a stage, not a size"))

    own = {k: v for k, v in flat.items() if k in FIELD_BY_KEY and not FIELD_BY_KEY[k][1].simpletuner}
    values, extra, more = st.from_simpletuner({k: v for k, v in flat.items() if k not in own})
    notes.extend(more)
    values.update(own)
    for key in [k for k in extra if k in FIELD_BY_KEY and FIELD_BY_KEY[k][1].simpletuner and k not in values]:
        values[key] = extra.pop(key)  # same name and meaning in both (tracker and webhook settings)
    values.update(sidecar)  # exact values where SimpleTuner's could not say them (export wrote both)
    unimplemented = sorted(k for k in extra if k not in st.MAPPED_ST_KEYS)
    if unimplemented:
        notes.append(Problem(
            f"SimpleTuner keys floydtui does not implement: {', '.join(unimplemented)}; kept in [extra]",
            where=origin, severity="warning", key="extra",
            hint="floydtui trains without them; `floydtui export` writes them back out"))
    lr, lr_end = _number(values.get("learning_rate")), _number(values.get("lr_end"))
    if lr is not None and lr_end is not None and lr_end > lr and "lr_end" not in flat and "lr_end" not in sidecar:
        values["lr_end"] = lr / 10
        notes.append(Problem(
            f"learning_rate {lr:g} is below SimpleTuner's default lr_end {lr_end:g}: lr_end became {lr / 10:g}",
            where=origin, severity="warning", key="lr_end", hint="set lr_end to where the schedule should end"))

    tables: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if value is None or key not in FIELD_BY_KEY:
            continue
        table, f = FIELD_BY_KEY[key]
        tables.setdefault(table, {})[key] = _coerce(f, value)
    preset: dict[str, Any] = {t: tables[t] for t in ("model", "training", "validation", "output") if t in tables}
    preset["datasets"] = [_import_dataset(d, notes) for d in (datasets or [])]
    if extra:
        preset["extra"] = extra
    return preset, notes


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _import_dataset(ds: Any, notes: list[Problem]) -> dict[str, Any]:
    if not isinstance(ds, dict):
        notes.append(Problem(f"a multidatabackend.json entry is not an object ({ds!r}): left out",
                             severity="warning", key="datasets"))
        return {}
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in st.dataset_from_simpletuner(ds).items():
        if value is None:  # unset, as in config.json
            continue
        f = DATASET_FIELD_BY_KEY.get(key)
        if f:
            out[key] = _coerce(f, value)
        else:
            extra[key] = value
    if extra:
        out["extra"] = extra
        notes.append(Problem(f"dataset {ds.get('id')!r}: SimpleTuner keys floydtui does not implement: "
                             f"{', '.join(sorted(extra))}; kept in its extra table", severity="warning", key="extra"))
    return out


# ---- writing SimpleTuner files -----------------------------------------------
def export_simpletuner(preset: Preset, out_dir: str | Path) -> tuple[list[Path], list[Problem]]:
    """Write config.json + multidatabackend.json + floydtui.json for SimpleTuner 4.10.1.

    config.json holds, in SimpleTuner's names and values, every value that differs from its
    defaults; floydtui.json names the SimpleTuner version and holds floydtui's own keys and the
    exact values of those SimpleTuner cannot say (each a warning). Paths go out as written:
    SimpleTuner reads relative paths against its working directory (`relative_paths`).
    """
    out_dir = Path(out_dir)
    flat = {k: v for table in ("model", "training", "validation", "output") for k, v in getattr(preset, table).items()}
    hub = not preset.model["pretrained_model_name_or_path"].startswith(("builtin:", ".", "/", "~")) \
        and not preset.path(preset.model["pretrained_model_name_or_path"]).exists()
    config, warnings = st.to_simpletuner(flat, hub_model=hub)
    own: dict[str, Any] = {"simpletuner_version": st.VERSION}
    for key, value in flat.items():
        if not FIELD_BY_KEY[key][1].simpletuner and value != FIELD_BY_KEY[key][1].default:
            own[key] = value
        elif FIELD_BY_KEY[key][1].simpletuner and key not in st.CONSUMED and value is not None:
            if key == "webhook_config" and webhook_source(value) != "file":
                continue  # inline URLs are secrets: only a reference to a file goes out
            config[key] = value  # the same name and meaning in SimpleTuner (tracker and webhook settings)
    for w in warnings:
        if w.key in flat:
            own[w.key] = flat[w.key]
    if flat["variant"] == "auto":
        own["variant"] = "auto"  # config.json says what it means for this model; floydtui keeps "auto"
    backend_path = (out_dir / "multidatabackend.json").resolve()
    config["data_backend_config"] = str(backend_path)
    for key, value in preset.extra.items():
        if key in config and st.still_means(key, value, flat):
            config[key] = value  # SimpleTuner's own word for it, kept by import
        elif key in config:
            warnings.append(Problem(f"[extra] {key} = {value!r} was not written: the preset's own value "
                                    f"{config[key]!r} was", severity="warning", key=key,
                                    hint=f"remove {key} from [extra]"))
        else:
            config[key] = value
    datasets = []
    for ds in preset.datasets:
        entry, more = st.dataset_to_simpletuner(ds, preset.training["model_type"])
        datasets.append(entry)
        warnings.extend(more)
    warnings = [dataclasses.replace(w, where=w.where or str(preset.source or "preset")) for w in warnings]
    written = [atomic_write_text(out_dir / "config.json", json.dumps(config, indent=2) + "\n"),
               atomic_write_text(backend_path, json.dumps(datasets, indent=2) + "\n"),
               atomic_write_text(out_dir / SIDECAR, json.dumps(own, indent=2) + "\n")]
    return written, warnings


def write_preset_file(data: dict[str, Any], path: str | Path) -> tuple[Path, list[Problem]]:
    """Write a preset dict atomically (TOML), even one floydtui cannot train yet.

    Returns the path and the problems `floydtui check` will report (as warnings): an import
    keeps what the files said rather than refusing.
    """
    try:
        preset_from_dict(data, source=Path(path))
        problems: list[Problem] = []
    except FloydError as e:
        problems = [dataclasses.replace(p, severity="warning") if p.is_error else p for p in e.problems]
    return write_preset_toml(path, data), problems


def relative_paths(preset: Preset) -> list[str]:
    """The preset's relative folders, which SimpleTuner would read against its working directory."""
    values = [preset.output["output_dir"]]
    values += [d[k] for d in preset.datasets for k in ("instance_data_dir", "cache_dir") if d.get(k)]
    if webhook_source(preset.output["webhook_config"]) == "file":
        values.append(preset.output["webhook_config"])
    return [v for v in values if not Path(v).expanduser().is_absolute()]
