"""Loading, validating and resolving presets (DESIGN.md section 4).

A preset is one TOML file. `load_preset` returns a `Preset` whose tables hold every key
with its default filled in, or raises `FloydError` with every problem found (not just the
first), each naming its table, key and what is allowed.

Relative paths in a preset are relative to the preset file's folder, so a preset works
from any working directory; the copy a run writes into its output folder holds them
absolute.
"""

from __future__ import annotations

import copy
import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from floydtui.config.flavours import BUILTIN_MODELS, FLAVOURS, GUIDANCE, Flavour, classify_model, stage_name
from floydtui.config.reporting import holds_inline_webhook, read_webhook_config, webhook_file, webhook_source
from floydtui.config.resolution import (
    normalise_validation_resolution,
    parse_validation_resolution,
    simpletuner_unreadable_items,
)
from floydtui.config.schema import (
    AUTO,
    DATASET_FIELD_BY_KEY,
    DATASET_FIELDS,
    FIELD_BY_KEY,
    TABLES,
    TOP_LEVEL,
    Field,
)
from floydtui.errors import FloydError, Problem
from floydtui.fsutil import atomic_write_text

DEFAULT_TEXT_EMBEDS_CACHE = "cache/text/deepfloyd"
IF_NUM_TRAIN_TIMESTEPS = 1000  # every IF flavour's DDPMScheduler (and the built-in models')


@dataclass
class Preset:
    """A validated preset with defaults filled in. Tables are plain dicts."""

    model: dict[str, Any]
    training: dict[str, Any]
    validation: dict[str, Any]
    output: dict[str, Any]
    datasets: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    warnings: list[Problem] = field(default_factory=list)

    # ---- derived views -------------------------------------------------
    @property
    def base_dir(self) -> Path:
        return self.source.parent.resolve() if self.source else Path.cwd()

    def path(self, value: str | Path) -> Path:
        """A path from the preset, resolved against the preset's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def flavour(self) -> Flavour:
        return FLAVOURS[self.model["model_flavour"]]

    @property
    def stage(self) -> int:
        return self.flavour.stage

    @property
    def base_model(self) -> str:
        """The hub id, a builtin: id, or an absolute local folder."""
        value = self.model["pretrained_model_name_or_path"]
        return str(self.path(value)) if classify_model(value, self.base_dir).kind == "local" else value

    @property
    def is_lora(self) -> bool:
        return self.training["model_type"] == "lora"

    @property
    def resolution(self) -> int:
        return self.training["resolution"]

    @property
    def validation_sizes(self) -> list[tuple[int, int]]:
        return parse_validation_resolution(self.validation["validation_resolution"])

    @property
    def validation_prompt_list(self) -> list[str]:
        prompts = [self.validation["validation_prompt"], *self.validation["validation_prompts"]]
        return list(dict.fromkeys(p for p in prompts if p))

    @property
    def output_dir(self) -> Path:
        return self.path(self.output["output_dir"])

    @property
    def image_datasets(self) -> list[dict[str, Any]]:
        return [d for d in self.datasets if d["dataset_type"] == "image" and not d["disable"]]

    @property
    def text_embeds_dataset(self) -> dict[str, Any]:
        embeds = [d for d in self.datasets if d["dataset_type"] == "text_embeds" and not d["disable"]]
        for d in embeds:
            if d["default"]:
                return d
        return embeds[0]

    @property
    def text_embeds_cache_dir(self) -> Path:
        return self.path(self.text_embeds_dataset["cache_dir"])

    # ---- writing -------------------------------------------------------
    def to_dict(self, absolute_paths: bool = False) -> dict[str, Any]:
        """The raw tables as written (defaults not filled), ready for TOML.

        `absolute_paths` gives the run's copy (OUTPUT_DIR/preset.toml): paths absolute, and an
        inline webhook_config left out (a file reference stays).
        """
        data = copy.deepcopy(self.raw)
        if absolute_paths:
            model = data.setdefault("model", {})
            if "pretrained_model_name_or_path" in model:
                model["pretrained_model_name_or_path"] = self.base_model
            data.setdefault("output", {})["output_dir"] = str(self.output_dir)
            hooks = data["output"].get("webhook_config")
            if webhook_source(hooks) == "file":
                data["output"]["webhook_config"] = str(webhook_file(hooks, self.base_dir))
            elif hooks is not None:  # inline URLs are secrets: the run's copy of the preset leaves them out
                del data["output"]["webhook_config"]
            for ds in data.get("datasets", []):
                for k in ("instance_data_dir", "cache_dir"):
                    if ds.get(k):
                        ds[k] = str(self.path(ds[k]))
        return data

    def to_toml(self, absolute_paths: bool = False) -> str:
        return dump_toml(self.to_dict(absolute_paths=absolute_paths))

    def with_overrides(self, overrides: dict[str, Any]) -> "Preset":
        """A new preset with `table.key` or bare `key` values replaced (for `--set`)."""
        return preset_from_dict(apply_overrides(self.raw, overrides), source=self.source)


def dump_toml(data: dict[str, Any]) -> str:
    import tomli_w

    ordered = {k: data[k] for k in (*TOP_LEVEL, *data) if k in data and k not in ("datasets", "extra")}
    if "datasets" in data:
        ordered["datasets"] = data["datasets"]
    if data.get("extra"):
        ordered["extra"] = data["extra"]
    return tomli_w.dumps(_drop_none(ordered))


def write_preset_toml(path: str | Path, data: dict[str, Any]) -> Path:
    """A preset's tables as TOML, written atomically; for its owner only when it holds webhook URLs inline."""
    return atomic_write_text(path, dump_toml(data), private=holds_inline_webhook(data))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):  # TOML has no null: a JSON list from SimpleTuner may hold one
        return [_drop_none(v) for v in value if v is not None]
    return value


def _locate_override(dotted: str, problems: list[Problem]) -> tuple[str | None, str]:
    if "." in dotted:
        table, key = dotted.split(".", 1)
        if table not in TABLES:
            problems.append(Problem(f"--set {dotted}: no table [{table}]",
                                    hint=f"tables are {', '.join(TABLES)}; or give the key alone"))
            return None, key
        return table, key
    if dotted in FIELD_BY_KEY:
        return FIELD_BY_KEY[dotted][0], dotted
    problems.append(Problem(f"--set {dotted}: unknown key", key=dotted,
                            hint=_did_you_mean(dotted, FIELD_BY_KEY) or "see `floydtui check --help`"))
    return None, dotted


def parse_set_value(text: str) -> Any:
    """A `--set` value: a TOML value where it parses as one, else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ---- loading -------------------------------------------------------------
_TOML_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FloydError.one(f"no such preset file: {path}", hint="check the path, or create one with `floydtui`")
    except (OSError, UnicodeDecodeError) as e:
        raise FloydError.one(f"cannot read preset {path}: {e}", hint="the preset must be a UTF-8 TOML file")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.search(msg)
        where = f"{path}:{m.group(1)}:{m.group(2)}" if m else str(path)
        line = ""
        if m:
            lines = text.splitlines()
            n = int(m.group(1))
            if 0 < n <= len(lines):
                line = f"; the line reads: {lines[n - 1].strip()!r}"
        raise FloydError.one(f"TOML syntax error: {_TOML_POS.sub('', msg).strip()}{line}", where=where,
                             hint="fix the syntax at that line and column (strings need quotes)")


def load_preset(path: str | Path, overrides: dict[str, Any] | None = None) -> Preset:
    path = Path(path)
    return preset_from_dict(apply_overrides(read_toml(path), overrides or {}), source=path)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set `table.key` or bare `key` values in a preset's raw tables (for `--set`)."""
    data = copy.deepcopy(data)
    problems: list[Problem] = []
    for dotted, value in overrides.items():
        table, key = _locate_override(dotted, problems)
        if table:
            if not isinstance(data.get(table), dict):
                data[table] = {}
            data[table][key] = value
    if problems:
        raise FloydError(problems)
    return data


def preset_from_dict(data: dict[str, Any], source: Path | None = None) -> Preset:
    """Validate a preset's tables; raise FloydError with every error found."""
    where = str(source) if source else "preset"
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise FloydError.one("a preset is a TOML document of tables", where=where)
    for table in data:
        if table not in TOP_LEVEL:
            if table in FIELD_BY_KEY:
                home = FIELD_BY_KEY[table][0]
                problems.append(Problem(f"key {table!r} is outside any table", where=where, key=table,
                                        hint=f"move it under [{home}]"))
            else:
                problems.append(Problem(f"unknown table [{table}]", where=where,
                                        hint=_did_you_mean(table, TOP_LEVEL) or
                                        f"tables are {', '.join(TOP_LEVEL)}"))
    resolved: dict[str, dict[str, Any]] = {}
    for table, fields in TABLES.items():
        given = data.get(table, {})
        if not isinstance(given, dict):
            problems.append(Problem(f"[{table}] must be a table", where=where))
            given = {}
        resolved[table] = _check_table(given, fields, table, where, problems)

    model, training, validation = resolved["model"], resolved["training"], resolved["validation"]
    flavour = FLAVOURS.get(model["model_flavour"])
    if flavour:
        _resolve_auto(model, training, validation, flavour)
        _check_stage(model, training, validation, flavour, where, problems)
        _check_model_location(model["pretrained_model_name_or_path"], source, where, problems)
    if isinstance(validation.get("validation_resolution"), str):
        try:
            parse_validation_resolution(validation["validation_resolution"])
        except FloydError as e:
            problems.extend(Problem(p.message, where=f"{where} [validation]", hint=p.hint,
                                    key="validation_resolution") for p in e.problems)
        else:
            unreadable = simpletuner_unreadable_items(validation["validation_resolution"])
            if unreadable:
                problems.append(Problem(
                    f"SimpleTuner would not read {', '.join(map(repr, unreadable))} in validation_resolution "
                    "(it wants WxH with no spaces and a plain x)", where=f"{where} [validation]", severity="warning",
                    key="validation_resolution", hint=f"write {normalise_validation_resolution(validation['validation_resolution'])!r}; "
                    "floydtui export writes that form"))
    output = resolved["output"]
    if output["tracker_run_name"] == AUTO and isinstance(output["output_dir"], str):
        output["tracker_run_name"] = Path(output["output_dir"]).name or "floydtui"
    try:  # inline webhooks now; a webhook file is read by `check` and the run
        read_webhook_config(output["webhook_config"], source.parent.resolve() if source else Path.cwd(),
                            read_file=False)
    except FloydError as e:
        problems.extend(Problem(p.message, where=f"{where} [output]", hint=p.hint, key=p.key) for p in e.problems)
    rates_valid = not any(p.key in ("learning_rate", "lr_end") for p in problems)  # else a default is compared
    if rates_valid and training["lr_end"] > training["learning_rate"]:
        problems.append(Problem(
            f"lr_end ({training['lr_end']:g}) is above learning_rate ({training['learning_rate']:g})",
            where=f"{where} [training]", key="lr_end", hint="lr_end is where a decaying schedule ends: make it "
            "smaller than learning_rate (the guide: 4e-5 down to 4e-6)"))
    _check_timestep_bias(training, f"{where} [training]", problems)
    if training["max_train_steps"] == 0 and training["num_train_epochs"] == 0:
        problems.append(Problem("neither max_train_steps nor num_train_epochs is set",
                                where=f"{where} [training]", key="max_train_steps",
                                hint="set max_train_steps (e.g. 1000) or num_train_epochs"))

    datasets_raw = data.get("datasets", [])
    datasets: list[dict[str, Any]] = []
    warnings: list[Problem] = []
    if not isinstance(datasets_raw, list):
        problems.append(Problem("datasets must be an array of tables ([[datasets]])", where=where))
        datasets_raw = []
    for i, ds in enumerate(datasets_raw):
        datasets.append(_check_dataset(ds, i, training, where, problems))
    _check_dataset_set(datasets, where, problems, warnings)

    extra = data.get("extra", {})
    if not isinstance(extra, dict):
        problems.append(Problem("[extra] must be a table", where=where))
        extra = {}
    errors = [p for p in problems if p.is_error]
    if errors:
        raise FloydError(problems)
    return Preset(model=model, training=training, validation=validation, output=resolved["output"],
                  datasets=datasets, extra=extra, raw=copy.deepcopy(data), source=source,
                  warnings=warnings + [p for p in problems if not p.is_error])


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else ""


def _check_value(f: Field, value: Any, where: str, problems: list[Problem]) -> bool:
    if value is None and f.nullable:
        return True
    if f.default == AUTO and value == AUTO:
        return True
    types = f.type if isinstance(f.type, tuple) else (f.type,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        allowed = f.allowed() + (" or \"auto\"" if f.default == AUTO else "")
        problems.append(Problem(f"{f.key} must be {allowed}, got {value!r} ({type(value).__name__})",
                                where=where, key=f.key, hint=f.doc))
        return False
    if f.choices and value not in f.choices:
        problems.append(Problem(f"{f.key} = {value!r} is not allowed: {f.allowed()}", where=where, key=f.key,
                                hint=_did_you_mean(str(value), [str(c) for c in f.choices]) or f.doc))
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low = f.min is not None and (value <= f.min if f.min_exclusive else value < f.min)
        high = f.max is not None and value > f.max
        if low or high:
            problems.append(Problem(f"{f.key} = {value!r} is out of range: must be {f.allowed()}",
                                    where=where, key=f.key, hint=f.doc))
            return False
    if f.type is list and not all(isinstance(v, str) for v in value):
        problems.append(Problem(f"{f.key} must be a list of strings", where=where, key=f.key, hint=f.doc))
        return False
    return True


def _check_table(given: dict, fields: list[Field], table: str, where: str, problems: list[Problem]) -> dict:
    known = {f.key: f for f in fields}
    out = {f.key: copy.deepcopy(f.default) for f in fields}
    for key, value in given.items():
        if key not in known:
            if key in FIELD_BY_KEY:
                hint = f"{key} belongs in [{FIELD_BY_KEY[key][0]}]: move it there"
            else:
                hint = _did_you_mean(key, known) or _did_you_mean(key, FIELD_BY_KEY) or \
                    f"keys of [{table}] are: {', '.join(known)}"
            problems.append(Problem(f"unknown key {key!r} in [{table}]", where=f"{where} [{table}]", key=key,
                                    hint=hint + "; keys floydtui does not use go in [extra]"))
            continue
        if _check_value(known[key], value, f"{where} [{table}]", problems):
            out[key] = value
    return out


def _check_timestep_bias(training: dict, where: str, problems: list[Problem]) -> None:
    """What SimpleTuner's generate_timestep_weights refuses, and a range that biases nothing."""
    strategy = training["timestep_bias_strategy"]
    if strategy == "none":
        return
    multiplier = training["timestep_bias_multiplier"]
    if multiplier <= 0:
        problems.append(Problem(
            f"timestep_bias_multiplier = {multiplier:g} with timestep_bias_strategy = {strategy!r}: a multiplier "
            "must be > 0 (it cannot switch timesteps off; SimpleTuner refuses it too)", where=where,
            key="timestep_bias_multiplier", hint="set timestep_bias_multiplier above 1 to draw the biased timesteps "
            "more often (e.g. 3), or timestep_bias_strategy = \"none\" for uniform timesteps"))
    if strategy != "range":
        return
    begin, end = training["timestep_bias_begin"], training["timestep_bias_end"]
    if end > IF_NUM_TRAIN_TIMESTEPS:
        problems.append(Problem(
            f"timestep_bias_end = {end} is past the end of the schedule: DeepFloyd IF has {IF_NUM_TRAIN_TIMESTEPS} "
            f"timesteps (0 to {IF_NUM_TRAIN_TIMESTEPS - 1})", where=where, key="timestep_bias_end",
            hint=f"set timestep_bias_end to at most {IF_NUM_TRAIN_TIMESTEPS} (the end is not included)"))
    elif begin >= end:
        problems.append(Problem(
            f"timestep_bias_begin = {begin} is not below timestep_bias_end = {end}: the range biases no timestep",
            where=where, key="timestep_bias_begin",
            hint="the range is begin (included) to end (not included): e.g. begin = 750, end = 1000 biases the "
            "noisiest quarter"))


def _resolve_auto(model: dict, training: dict, validation: dict, flavour: Flavour) -> None:
    if model["pretrained_model_name_or_path"] == AUTO:
        model["pretrained_model_name_or_path"] = flavour.hub_id
    if training["resolution"] == AUTO:
        training["resolution"] = flavour.native_resolution
    if training["lora_alpha"] == AUTO:
        training["lora_alpha"] = training["lora_rank"]
    if validation["validation_resolution"] == AUTO:
        validation["validation_resolution"] = str(flavour.native_resolution)
    if validation["validation_guidance"] == AUTO:
        validation["validation_guidance"] = GUIDANCE[flavour.stage]


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def _check_model_location(value: str, source: Path | None, where: str, problems: list[Problem]) -> None:
    """A model id that is neither a built-in id, an existing folder nor a well-formed hub id fails here."""
    model = classify_model(value, source.parent.resolve() if source else Path.cwd())
    # a missing folder written as a path is the download section's to report (floydtui check, the wizard)
    if model.kind == "hub" and not _HUB_ID.match(value):
        problems.append(Problem(
            f"pretrained_model_name_or_path {value!r} is neither a folder (looked for {model.path}) nor a hub id",
            where=f"{where} [model]", key="pretrained_model_name_or_path",
            hint="a hub id looks like DeepFloyd/IF-I-M-v1.0; a folder must exist"))


def _check_stage(model: dict, training: dict, validation: dict, flavour: Flavour, where: str,
                 problems: list[Problem]) -> None:
    name = flavour.name
    model_id = model["pretrained_model_name_or_path"]
    found = classify_model(model_id)
    if found.kind == "builtin" and model_id not in BUILTIN_MODELS:
        problems.append(Problem(
            f"unknown built-in model {model_id!r}", where=f"{where} [model]", key="pretrained_model_name_or_path",
            hint=_did_you_mean(model_id, BUILTIN_MODELS) or "the built-in models are " + ", ".join(BUILTIN_MODELS)))
    if found.stage is not None and found.stage != flavour.stage:
        problems.append(Problem(
            f"model_flavour {name} is {stage_name(flavour.stage)} but {model_id} is a {found.stage_name} model",
            where=f"{where} [model]", key="pretrained_model_name_or_path",
            hint="pick a flavour of the model's stage, or the model of the flavour's stage"))
    res = training["resolution"]
    if isinstance(res, int) and res % 8:
        problems.append(Problem(f"resolution {res} is not a multiple of 8", where=f"{where} [training]",
                                key="resolution", hint=f"use {max(8, round(res / 8) * 8)}"))
    if flavour.stage == 2:
        if isinstance(res, int) and res < 256:
            problems.append(Problem(
                f"{name} is the 64->256 upscaler but resolution is {res}", where=f"{where} [training]",
                key="resolution", hint="set resolution = 256 (stage II trains at its output size)"))
        try:
            small = [s for s in parse_validation_resolution(validation["validation_resolution"])
                     if min(s) < 256]
        except (FloydError, TypeError):
            small = []
        if small:
            problems.append(Problem(
                f"{name} validation sizes are output sizes, but "
                f"{', '.join(f'{w}x{h}' for w, h in small)} is below 256",
                where=f"{where} [validation]", key="validation_resolution",
                hint="use output sizes such as \"256\" or \"256,384x256\" (4x the 64px input)"))
    elif isinstance(res, int) and res > 128:
        problems.append(Problem(
            f"{name} is a 64px model but resolution is {res}", where=f"{where} [training]", key="resolution",
            severity="warning",
            hint="stage I is designed for 64px (detail comes from stage II); 64 is the guide's value"))


def _check_dataset(ds: Any, i: int, training: dict, where: str, problems: list[Problem]) -> dict:
    label = f"{where} [[datasets]] #{i + 1}"
    if not isinstance(ds, dict):
        problems.append(Problem("each [[datasets]] entry must be a table", where=label))
        return {f.key: f.default for f in DATASET_FIELDS} | {"extra": {}}
    if isinstance(ds.get("id"), str):
        label = f"{where} [[datasets]] {ds['id']!r}"
    out = {f.key: copy.deepcopy(f.default) for f in DATASET_FIELDS}
    out["extra"] = {}
    invalid: set[str] = set()  # keys already reported, not to be reported again as missing
    for key, value in ds.items():
        if key == "extra":
            if isinstance(value, dict):
                out["extra"] = value
            else:
                problems.append(Problem("a dataset's extra must be a table", where=label))
            continue
        f = DATASET_FIELD_BY_KEY.get(key)
        if not f:
            problems.append(Problem(f"unknown dataset key {key!r}", where=label, key=key,
                                    hint=(_did_you_mean(key, DATASET_FIELD_BY_KEY) or
                                          "keys floydtui does not use go in the dataset's [datasets.extra]")))
            continue
        if _check_value(f, value, label, problems):
            out[key] = value
        else:
            invalid.add(key)
    if (not isinstance(out["id"], str) or not out["id"]) and "id" not in invalid:
        problems.append(Problem("dataset has no id", where=label, key="id", hint='add id = "my-dataset"'))
    if out["resolution"] is None:
        out["resolution"] = training["resolution"]
    if out["resolution_type"] is None:
        out["resolution_type"] = training["resolution_type"]
    if out["dataset_type"] == "image" and not out["instance_data_dir"] and not out["disable"] \
            and "instance_data_dir" not in invalid:
        problems.append(Problem("image dataset has no instance_data_dir", where=label, key="instance_data_dir",
                                hint="set instance_data_dir to the folder of training images"))
    if out["dataset_type"] == "text_embeds" and not out["cache_dir"]:
        out["cache_dir"] = DEFAULT_TEXT_EMBEDS_CACHE
    if out["caption_strategy"] == "instanceprompt" and not out["instance_prompt"] \
            and out["dataset_type"] == "image":
        problems.append(Problem("caption_strategy is instanceprompt but instance_prompt is empty", where=label,
                                key="instance_prompt", hint="set instance_prompt to your trigger phrase"))
    return out


def _check_dataset_set(datasets: list[dict], where: str, problems: list[Problem],
                       warnings: list[Problem]) -> None:
    ids = [d["id"] for d in datasets if isinstance(d.get("id"), str)]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(Problem(f"two datasets share the id {dup!r}", where=where, key="id",
                                hint="give each [[datasets]] entry its own id"))
    if not any(d["dataset_type"] == "image" and not d["disable"] for d in datasets):
        problems.append(Problem("no image dataset", where=where, key="datasets",
                                hint="add a [[datasets]] entry with instance_data_dir"))
    if not any(d["dataset_type"] == "text_embeds" and not d["disable"] for d in datasets):
        datasets.append({f.key: f.default for f in DATASET_FIELDS} | {
            "id": "text-embeds", "dataset_type": "text_embeds", "default": True,
            "cache_dir": DEFAULT_TEXT_EMBEDS_CACHE, "extra": {}})
        warnings.append(Problem(
            f"no text_embeds dataset: caching embeds in {DEFAULT_TEXT_EMBEDS_CACHE} beside the preset",
            where=where, severity="warning", key="datasets",
            hint="add a [[datasets]] entry with dataset_type = \"text_embeds\" and cache_dir to choose"))
