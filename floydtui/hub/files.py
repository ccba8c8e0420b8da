"""Which files of a DeepFloyd IF repo a run needs, and how big they are when nobody can ask the hub.

A diffusers repo holds one folder per pipeline component and, per folder, weights in several
precisions and formats. A run needs the components its pipeline loads (never the safety
checker and watermarker unless asked), and of each component one set of weights: the fp16
variant where the repo has it (unless variant = "none"), safetensors before .bin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from floydtui.config.flavours import FLAVOURS, TEXT_ENCODER_PARAMS

MODEL_INDEX = "model_index.json"
# IFPipeline's components; IFSuperResolutionPipeline adds image_noising_scheduler.
STAGE_COMPONENTS = {
    1: ("unet", "scheduler", "text_encoder", "tokenizer", "feature_extractor"),
    2: ("unet", "scheduler", "image_noising_scheduler", "tokenizer", "feature_extractor"),
}  # stage II repos hold no text encoder: T5 comes from a stage I repo (text_encoder_source)
TEXT_ENCODER_COMPONENTS = ("text_encoder", "tokenizer")
SAFETY_COMPONENTS = ("safety_checker", "watermarker")

_WEIGHTS_RE = re.compile(r"^(?P<stem>[^.]+?)(?:\.(?P<var>[A-Za-z0-9_]+))?(?:-\d+-of-\d+)?\.(?P<fmt>safetensors|bin)$")
_INDEX_RE = re.compile(r"^(?P<stem>[^.]+)\.(?P<fmt>safetensors|bin)\.index(?:\.(?P<var>[A-Za-z0-9_]+))?\.json$")
# Weights other frameworks load (flax, TF, ONNX, original checkpoints): never needed here.
_FOREIGN = (".msgpack", ".h5", ".onnx", ".onnx_data", ".pb", ".ckpt", ".pt", ".pth", ".ot", ".tflite")


@dataclass(frozen=True)
class WeightFile:
    """A weights file or its shard index: which variant and format it belongs to."""

    variant: str | None
    fmt: str  # "safetensors" | "bin"


def weight_kind(name: str) -> WeightFile | None:
    """The variant and format of a weights file or shard index by its name; None for other files."""
    base = name.rsplit("/", 1)[-1]
    m = _INDEX_RE.match(base) or _WEIGHTS_RE.match(base)
    return WeightFile(m.group("var"), m.group("fmt")) if m else None


def wanted_variant(variant: str | None) -> str | None:
    """The preset's variant (auto | fp16 | none; None means auto) as a file variant."""
    return None if variant == "none" else "fp16"


def components_for(stage: int, role: str, text_encoder: bool = True, safety: bool = False) -> tuple[str, ...]:
    """The component folders a run loads from a repo in `role` ("model" or "text encoder")."""
    if role == "text encoder":
        return TEXT_ENCODER_COMPONENTS
    names = tuple(c for c in STAGE_COMPONENTS[stage] if text_encoder or c != "text_encoder")
    return names + SAFETY_COMPONENTS if safety else names


def select_files(names, components, variant: str | None, pipeline: bool = True
                 ) -> tuple[list[str], dict[str, str | None]]:
    """The files to fetch from a repo listing, and per folder with weights the variant chosen.

    Per component folder: every file that is not weights (configs, tokenizer files), and one
    set of weights: the wanted variant where the folder has it, else the full-precision ones;
    safetensors before .bin; sharded weights with their index. `pipeline`: also model_index.json.
    """
    want = wanted_variant(variant)
    by_folder: dict[str, list[str]] = {}
    for name in names:
        folder, sep, _rest = name.partition("/")
        if sep and folder in components and "/" not in _rest:
            by_folder.setdefault(folder, []).append(name)
    chosen: list[str] = [MODEL_INDEX] if pipeline and MODEL_INDEX in names else []
    chosen_variants: dict[str, str | None] = {}
    for folder in components:
        files = sorted(by_folder.get(folder, []))
        weights = {f: weight_kind(f) for f in files}
        chosen += [f for f, kind in weights.items() if kind is None and not f.endswith(_FOREIGN)]
        kinds = {k for k in weights.values() if k}
        if not kinds:
            continue
        variants = {k.variant for k in kinds}
        var = want if want in variants else None
        if var is None and None not in variants:
            continue  # only other variants (8bit...): nothing this run can load
        fmt = "safetensors" if WeightFile(var, "safetensors") in kinds else "bin"
        chosen += [f for f, kind in weights.items() if kind == WeightFile(var, fmt)]
        chosen_variants[folder] = var
    return chosen, chosen_variants


# ---- offline estimates --------------------------------------------------
# When the hub cannot be asked and nothing was listed before, a plan still needs sizes: the
# weights are the parameter counts of DeepFloyd's model zoo (flavours.py) times 2 bytes (fp16)
# or 4 (fp32); configs and tokenizer files are small round figures.
_SMALL = {"model_index.json": 1_000, "scheduler": 1_000, "image_noising_scheduler": 1_000,
          "feature_extractor": 1_000, "tokenizer": 800_000, "config": 2_000}


def expected_files(repo_id: str, components, variant: str | None, pipeline: bool = True
                   ) -> list[tuple[str, int | None]]:
    """(name or pattern, estimated bytes) of what a component set holds, for a repo not yet listed.

    Names are exact for configs and the UNet; the T5 weights are sharded in DeepFloyd's repos, so
    they are a pattern until the hub lists them.
    """
    var = wanted_variant(variant)
    bytes_per_param = 2 if var == "fp16" else 4
    suffix = f".{var}" if var else ""
    unet_params = next((f.unet_params for f in FLAVOURS.values() if f.hub_id.lower() == repo_id.lower()), None)
    out: list[tuple[str, int | None]] = []
    if pipeline:
        out.append((MODEL_INDEX, _SMALL["model_index.json"]))
    for comp in components:
        if comp == "unet":
            out.append(("unet/config.json", _SMALL["config"]))
            out.append((f"unet/diffusion_pytorch_model{suffix}.safetensors",
                        unet_params * bytes_per_param if unet_params else None))
        elif comp == "text_encoder":
            out.append(("text_encoder/config.json", _SMALL["config"]))
            out.append((f"text_encoder/model{suffix}*.safetensors", TEXT_ENCODER_PARAMS * bytes_per_param))
        elif comp in ("scheduler", "image_noising_scheduler"):
            out.append((f"{comp}/scheduler_config.json", _SMALL[comp]))
        elif comp == "feature_extractor":
            out.append(("feature_extractor/preprocessor_config.json", _SMALL[comp]))
        elif comp == "tokenizer":
            out.append(("tokenizer/tokenizer_config.json", _SMALL[comp]))
        else:
            out.append((f"{comp}/*", None))
    return out
