"""The wizard's model: the preset being edited, as raw TOML tables, validated on every change.

No Textual here. Each edit goes through the config layer (`preset_from_dict`), so the
wizard shows exactly the messages `floydtui check` and `floydtui run` would print, next
to the field each one names.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floydtui.config.flavours import (BUILTIN_MODELS, BUILTIN_PREFIX, FLAVOURS, TEXT_MAX_LENGTH, builtin_family,
                                      classify_model, embed_bytes, text_dim)
from floydtui.config.preset import (DEFAULT_TEXT_EMBEDS_CACHE, Preset, dump_toml, preset_from_dict, read_toml,
                                    write_preset_toml)
from floydtui.config.schema import AUTO, DATASET_FIELD_BY_KEY, FIELD_BY_KEY, Field
from floydtui.errors import FloydError, Problem

DATASETS = "datasets"
PATH_KEYS = ("instance_data_dir", "cache_dir")
_INT = re.compile(r"^[+-]?\d+$")
_STAGE_VALIDATION = {1: "64,96,64x96,96x64", 2: "256"}  # the guide's stage I sizes; stage II outputs 256


def guide_preset(flavour: str = "i-medium-400m") -> dict[str, Any]:
    """A new preset with the guide's values (spec/deepfloyd-guide.txt), no image dataset yet."""
    f = FLAVOURS[flavour]
    return {
        "model": {"model_family": "deepfloyd", "model_flavour": flavour},
        "training": {"model_type": "lora", "lora_rank": 32, "learning_rate": 4e-5, "lr_end": 4e-6,
                     "train_batch_size": 4, "use_dora": False, "use_bitfit": False,
                     "attention_mechanism": "sdpa", "resolution": f.native_resolution, "resolution_type": "pixel"},
        "validation": {"validation_resolution": _STAGE_VALIDATION[f.stage]},
        "output": {"output_dir": f"output/{flavour}-lora"},
        "datasets": [{"id": "text-embeds", "dataset_type": "text_embeds", "default": True, "type": "local",
                      "cache_dir": DEFAULT_TEXT_EMBEDS_CACHE}],
    }


def guide_dataset(dataset_id: str, resolution: int) -> dict[str, Any]:
    """An image dataset with the guide's dataloader values."""
    return {"id": dataset_id, "type": "local", "instance_data_dir": "", "crop": True, "crop_aspect": "square",
            "crop_style": "random", "resolution": resolution, "resolution_type": "pixel",
            "minimum_image_size": 64, "maximum_image_size": 256, "target_downsample_size": 128,
            "prepend_instance_prompt": False, "instance_prompt": "", "caption_strategy": "filename",
            "repeats": 0}


def field_of(scope: str, key: str) -> Field:
    """The schema field for a key of a table, or of a dataset when scope is "datasets"."""
    return DATASET_FIELD_BY_KEY[key] if scope == DATASETS else FIELD_BY_KEY[key][1]


def value_from_text(f: Field, text: str) -> Any:
    """What a typed text means for a field; text that is not the field's type stays a string,
    so the config layer reports it in its own words. Empty means "the default" (None)."""
    text = text.strip()
    if not text:
        return None
    types = f.type if isinstance(f.type, tuple) else (f.type,)
    if f.default == AUTO and text.lower() == AUTO:
        return AUTO
    if int in types and _INT.match(text):
        return int(text)
    if float in types:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def text_of(value: Any) -> str:
    """A value as the wizard's text boxes show it."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class EmbedEstimate:
    prompts: int
    bytes_each: int
    total_bytes: int
    seconds: float
    basis: str


class WizardState:
    """The preset being edited. `data` is the raw tables; `preset` the last valid resolve."""

    def __init__(self, data: dict[str, Any] | None = None, source: Path | None = None) -> None:
        self.data: dict[str, Any] = copy.deepcopy(data) if data is not None else guide_preset()
        self.source = source.resolve() if source else None
        self.problems: list[Problem] = []
        self.preset: Preset | None = None
        self.loose_preset: Preset | None = None  # the preset with its datasets set aside, while they are wrong
        self.dirty = False
        self.validate()

    @classmethod
    def open(cls, path: str | Path) -> "WizardState":
        """A preset file for editing; a file that does not exist yet starts from the guide's values."""
        path = Path(path)
        if not path.exists():
            return cls(source=path)
        return cls(read_toml(path), source=path)

    # ---- reading -----------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """Relative paths in the preset are relative to this folder (the preset's own)."""
        return self.source.parent if self.source else Path.cwd()

    @property
    def flavour(self) -> str:
        name = self.data.get("model", {}).get("model_flavour", "i-medium-400m")
        return name if name in FLAVOURS else "i-medium-400m"

    @property
    def stage(self) -> int:
        return FLAVOURS[self.flavour].stage

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def get(self, scope: str, key: str, index: int | None = None) -> Any:
        """The value written in the preset (None where the default applies)."""
        if scope == DATASETS:
            return self.datasets[index].get(key) if index is not None and index < len(self.datasets) else None
        return self.data.get(scope, {}).get(key)

    def resolved(self, scope: str, key: str) -> Any:
        """The value in force: what is written, else the resolved default."""
        preset = self.preset or self.loose_preset
        if preset is not None:
            return getattr(preset, scope)[key]
        value = self.get(scope, key)
        return value if value is not None else field_of(scope, key).default

    @property
    def datasets(self) -> list[dict[str, Any]]:
        return self.data.setdefault(DATASETS, [])

    def dataset_folder(self, index: int) -> Path | None:
        """A dataset's folder as typed, resolved against the preset's folder; None when empty."""
        text = str(self.datasets[index].get("instance_data_dir") or "").strip()
        return self.base_dir / Path(text).expanduser() if text else None

    def image_dataset_indexes(self) -> list[int]:
        return [i for i, d in enumerate(self.datasets) if d.get("dataset_type", "image") == "image"]

    def text_embeds_index(self) -> int:
        """The index of the default text_embeds dataset, created where there is none."""
        embeds = [i for i, d in enumerate(self.datasets) if d.get("dataset_type") == "text_embeds"]
        for i in embeds:
            if self.datasets[i].get("default"):
                return i
        if embeds:
            return embeds[0]
        self.datasets.append({"id": "text-embeds", "dataset_type": "text_embeds", "default": True,
                              "type": "local", "cache_dir": DEFAULT_TEXT_EMBEDS_CACHE})
        self.validate()
        return len(self.datasets) - 1

    def dataset_label(self, index: int) -> str:
        """How the config layer names a dataset in a Problem's `where`."""
        ds = self.datasets[index]
        return f"[[datasets]] {ds['id']!r}" if isinstance(ds.get("id"), str) and ds.get("id") else \
            f"[[datasets]] #{index + 1}"

    def problems_for(self, key: str, index: int | None = None) -> list[Problem]:
        """Problems naming `key`; for a dataset field, those of that dataset only."""
        out = []
        for p in self.problems:
            if p.key != key:
                continue
            in_dataset = "[[datasets]]" in p.where
            if index is None and not in_dataset:
                out.append(p)
            elif index is not None and in_dataset and p.where.endswith(self.dataset_label(index)):
                out.append(p)
        return out

    # ---- editing -----------------------------------------------------
    def set(self, scope: str, key: str, value: Any, index: int | None = None) -> list[Problem]:
        """Write a value (None removes the key: the default applies); returns the key's problems."""
        table = self.datasets[index] if scope == DATASETS else self.data.setdefault(scope, {})
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
        self.dirty = True
        self.validate()
        return self.problems_for(key, index if scope == DATASETS else None)

    def set_text(self, scope: str, key: str, text: str, index: int | None = None) -> list[Problem]:
        """Write what was typed into a field's box."""
        return self.set(scope, key, value_from_text(field_of(scope, key), text), index)

    def set_flavour(self, name: str) -> None:
        """Choose a flavour; values that were the old stage's defaults follow the new stage."""
        old, new = FLAVOURS[self.flavour], FLAVOURS[name]
        model = self.data.setdefault("model", {})
        model["model_flavour"] = name
        base = model.get("pretrained_model_name_or_path")
        if base == old.hub_id:
            model["pretrained_model_name_or_path"] = new.hub_id
        elif isinstance(base, str) and classify_model(base).kind == "builtin" and BUILTIN_MODELS.get(base) != new.stage:
            model["pretrained_model_name_or_path"] = builtin_family(base, new.stage)
        if old.stage != new.stage:
            training = self.data.setdefault("training", {})
            if training.get("resolution") in (None, old.native_resolution):
                training["resolution"] = new.native_resolution
            validation = self.data.setdefault("validation", {})
            if validation.get("validation_resolution") in (None, _STAGE_VALIDATION[old.stage],
                                                           str(old.native_resolution)):
                validation["validation_resolution"] = _STAGE_VALIDATION[new.stage]
            for ds in self.datasets:
                if ds.get("dataset_type", "image") == "image" and ds.get("resolution") == old.native_resolution:
                    ds["resolution"] = new.native_resolution
        output = self.data.setdefault("output", {})
        if output.get("output_dir") == f"output/{old.name}-lora":
            output["output_dir"] = f"output/{name}-lora"
        self.dirty = True
        self.validate()

    def add_dataset(self, folder: str = "") -> int:
        """A new image dataset with the guide's values; returns its index."""
        ids = {d.get("id") for d in self.datasets}
        n = 1
        while f"dataset-{n}" in ids:
            n += 1
        ds = guide_dataset(f"dataset-{n}", self.resolved("training", "resolution"))
        ds["instance_data_dir"] = folder
        self.datasets.append(ds)
        self.dirty = True
        self.validate()
        return len(self.datasets) - 1

    def remove_dataset(self, index: int) -> None:
        del self.datasets[index]
        self.dirty = True
        self.validate()

    def apply_overrides(self, overrides: dict[str, Any]) -> None:
        """Apply `{key: value}` (hardware advice) to the tables the keys belong to."""
        overrides = dict(overrides)
        if "model_flavour" in overrides:  # a flavour brings its stage's defaults along
            self.set_flavour(str(overrides.pop("model_flavour")))
        for key, value in overrides.items():
            table = key.split(".", 1)[0] if "." in key else FIELD_BY_KEY[key][0]
            self.data.setdefault(table, {})[key.split(".", 1)[-1]] = value
        self.dirty = True
        self.validate()

    def validate(self) -> list[Problem]:
        """Resolve the preset through the config layer; keeps its problems and warnings."""
        try:
            self.preset = preset_from_dict(copy.deepcopy(self.data), source=self._virtual_source())
            self.problems = list(self.preset.warnings)
            self.loose_preset = None
        except FloydError as e:
            self.preset = None
            self.problems = list(e.problems)
            self.loose_preset = self._loose()
        return self.problems

    def estimate_preset(self) -> Preset | None:
        """The preset for the memory estimate, which does not depend on the datasets: valid
        model and training settings are enough (the hardware step comes before the datasets)."""
        return self.preset or self.loose_preset

    def _loose(self) -> Preset | None:
        data = copy.deepcopy(self.data)
        placeholder = guide_dataset("placeholder", 0)
        del placeholder["resolution"]  # the preset's own applies
        placeholder["instance_data_dir"] = "."
        data[DATASETS] = [placeholder]
        try:
            return preset_from_dict(data, source=self._virtual_source())
        except FloydError:
            return None

    def _virtual_source(self) -> Path:
        # An unsaved preset resolves its relative paths against the working folder.
        return self.source or Path.cwd() / "unsaved.toml"

    # ---- writing -----------------------------------------------------
    def to_toml(self) -> str:
        return dump_toml(self.data)

    def save(self, path: str | Path) -> Path:
        """Write the preset atomically at `path`; relative paths are rewritten to stay pointing at
        the same folders from the new location. Raises FloydError while the preset has errors."""
        path = Path(path).expanduser().resolve()
        data = rebase_paths(self.data, self.base_dir, path.parent)
        preset_from_dict(copy.deepcopy(data), source=path)  # refuse to write what `run` would refuse
        write_preset_toml(path, data)
        self.data, self.source, self.dirty = data, path, False
        self.validate()
        return path

    # ---- derived ------------------------------------------------------
    def default_save_path(self) -> Path:
        return self.source or Path.cwd() / f"{self.flavour}-lora.toml"

    def embed_estimate(self, captions: int, on_gpu: bool) -> EmbedEstimate:
        """Size on disk and time to cache the text embeds for `captions` unique dataset captions."""
        preset = self.preset
        prompts = captions + 1  # the empty prompt, for caption dropout and guidance
        if preset is not None:
            prompts += len(preset.validation_prompt_list)
            if preset.validation["validation_negative_prompt"]:
                prompts += 1
        model_id = str(self.resolved("model", "pretrained_model_name_or_path"))
        builtin = classify_model(model_id).kind == "builtin"
        dim, name = text_dim(model_id), "the built-in tiny encoder" if builtin else "T5-XXL"
        width = 4 if self.resolved("training", "mixed_precision") == "no" else 2
        bytes_each = embed_bytes(dim, width)  # an entry is prompt_embeds in the training dtype
        rate = GUIDE_EMBEDS_PER_S if on_gpu or builtin else CPU_EMBEDS_PER_S
        if builtin:
            rate = BUILTIN_EMBEDS_PER_S
        basis = (f"{TEXT_MAX_LENGTH} tokens x {dim} dims x {width} bytes ({name}, "
                 f"{'fp32' if width == 4 else 'bf16/fp16'}) a prompt; "
                 + ("the tiny encoder runs hundreds a second" if builtin else
                    f"{GUIDE_EMBEDS_PER_S:g}/s is the guide's A6000 rate" if on_gpu else
                    f"no GPU: T5-XXL on a CPU, about {CPU_EMBEDS_PER_S:g}/s"))
        return EmbedEstimate(prompts, bytes_each, prompts * bytes_each, prompts / rate, basis)


GUIDE_EMBEDS_PER_S = 9.5  # the guide: "about 9-10 per second currently on an A6000"
CPU_EMBEDS_PER_S = 0.5  # a 4.8B-parameter encoder on a CPU: a couple of seconds a prompt
BUILTIN_EMBEDS_PER_S = 200.0


def rebase_paths(data: dict[str, Any], old_base: Path, new_base: Path) -> dict[str, Any]:
    """A copy of `data` whose relative paths name the same folders from `new_base`."""
    out = copy.deepcopy(data)
    if old_base.resolve() == new_base.resolve():
        return out

    def move(value: Any) -> Any:
        if not isinstance(value, str) or not value or value.startswith(("/", "~", BUILTIN_PREFIX)):
            return value
        return os.path.relpath((old_base / value).resolve(), new_base.resolve())

    if "output_dir" in out.get("output", {}):
        out["output"]["output_dir"] = move(out["output"]["output_dir"])
    model = out.get("model", {})
    base = model.get("pretrained_model_name_or_path")
    if isinstance(base, str) and (base.startswith(".") or (old_base / base).exists()):
        model["pretrained_model_name_or_path"] = move(base)
    for ds in out.get(DATASETS, []):
        for key in PATH_KEYS:
            if ds.get(key):
                ds[key] = move(ds[key])
    return out
