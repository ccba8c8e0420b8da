"""The DeepFloyd IF model zoo: the five flavours floydtui trains, the built-in models, what a
model id names (`classify_model`), the stages' names and the text encoder's facts.

Parameter counts and hub ids are from DeepFloyd's model zoo (DESIGN.md section 4);
the notes are the guide's (spec/deepfloyd-guide.txt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# T5 v1.1 XXL's encoder, shared by every stage (DESIGN.md section 4).
TEXT_ENCODER_PARAMS = 4_760_000_000
TEXT_MAX_LENGTH = 77  # tokens a prompt is padded to: prompt_embeds are [77, width]
T5_XXL_DIM = 4096  # T5 v1.1 XXL's d_model (if_configs/*/text_encoder/config.json)
TINY_TEXT_DIM = 64  # the width of the tiny T5 every built-in model shares (train/tiny.py builds it)

# The pipelines' own guidance defaults: IFPipeline 7.0, IFSuperResolutionPipeline 4.0 (IF's model card).
# validation_guidance = "auto" and `floydtui generate` both take them from here.
GUIDANCE = {1: 7.0, 2: 4.0}

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = {"builtin:tiny-if-i": 1, "builtin:tiny-if-ii": 2, "builtin:shapes-if-i": 1, "builtin:shapes-if-ii": 2}
# What each built-in model is, in a few words: the wizard, the monitor, the model card and doctor say it.
BUILTIN_LABELS = {
    "builtin:tiny-if-i": "tiny IF stage I, random weights (for tests)",
    "builtin:tiny-if-ii": "tiny IF stage II, random weights (for tests)",
    "builtin:shapes-if-i": "tiny IF stage I pretrained on the shapes world (for the demo)",
    "builtin:shapes-if-ii": "tiny IF stage II (64->256) pretrained on the shapes world (for the demo)",
}


@dataclass(frozen=True)
class Flavour:
    name: str
    stage: int  # 1 (64px base) or 2 (64->256 upscaler)
    unet_params: int  # the model zoo's label; exact counts: floydtui/hardware/archdata.py
    hub_id: str
    native_resolution: int  # output size; stage II takes 64px input
    summary: str
    notes: tuple[str, ...]

    @property
    def params_label(self) -> str:
        n = self.unet_params
        return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


_LICENCE = "DeepFloyd IF licence: research use; restrictive on commercial use. Accept it on the model page."

FLAVOURS: dict[str, Flavour] = {
    f.name: f
    for f in (
        Flavour(
            "i-medium-400m", 1, 400_000_000, "DeepFloyd/IF-I-M-v1.0", 64,
            "Stage I base, 64px. The guide's choice: cheapest to train, defines composition.",
            ("The guide focuses on this flavour.", "Stage I sets composition: where large items and shadows go.",
             "Aesthetics lie between SD 2.x and SDXL.", _LICENCE),
        ),
        Flavour(
            "i-large-900m", 1, 900_000_000, "DeepFloyd/IF-I-L-v1.0", 64,
            "Stage I base, 64px, larger: more capacity, about twice the cost of medium.",
            ("Trains with the same settings as i-medium-400m.", "Stage I sets composition.", _LICENCE),
        ),
        Flavour(
            "i-xlarge-4.3b", 1, 4_300_000_000, "DeepFloyd/IF-I-XL-v1.0", 64,
            "Stage I base, 64px, the largest: best prior, heaviest to train.",
            ("Trainable with the same guidelines as the 400M model.",
             "With T5-XXL the whole stack is about 15B parameters.", _LICENCE),
        ),
        Flavour(
            "ii-medium-450m", 2, 450_000_000, "DeepFloyd/IF-II-M-v1.0", 256,
            "Stage II upscaler, 64->256px: tune it for upscaled detail.",
            ("Stage II adds detail; it takes 64px (or 96x64) inputs.",
             "Eval images come from the datasets (num_eval_images).", _LICENCE),
        ),
        Flavour(
            "ii-large-1.2b", 2, 1_200_000_000, "DeepFloyd/IF-II-L-v1.0", 256,
            "Stage II upscaler, 64->256px, larger.",
            ("Stage II adds detail; it takes 64px (or 96x64) inputs.", _LICENCE),
        ),
    )
}

FLAVOUR_NAMES = tuple(FLAVOURS)


def builtin_label(model_id: str) -> str:
    """What a built-in model is, in a few words ("" for any other model id)."""
    return BUILTIN_LABELS.get(model_id, "")


def builtin_family(model_id: str, stage: int) -> str:
    """The built-in model of `stage` from the same family as `model_id` (shapes stays shapes, tiny stays tiny)."""
    family = "shapes" if model_id.startswith(f"{BUILTIN_PREFIX}shapes-") else "tiny"
    return f"{BUILTIN_PREFIX}{family}-if-{'i' * stage}"


STAGE_NUMERALS = {1: "I", 2: "II"}


def stage_numeral(stage: int) -> str:
    """The guide's name of a stage's number: "I" (64px base) or "II" (64->256 upscaler)."""
    return STAGE_NUMERALS[stage]


def stage_name(stage: int) -> str:
    """The words messages use for a stage: "stage I" or "stage II"."""
    return f"stage {stage_numeral(stage)}"


@dataclass(frozen=True)
class ModelId:
    """What a base model id names, as far as is knowable without loading it."""

    model_id: str
    kind: str  # "builtin" | "local" (a folder, existing or written as a path) | "hub"
    stage: int | None  # where the id names it: a built-in model, one of DeepFloyd's repos
    path: Path | None = None  # a local id's folder, or where a hub id was looked for as one (not resolved)

    @property
    def stage_name(self) -> str:
        """The stage the id names in words ("stage I"), or "" where the id does not say."""
        return stage_name(self.stage) if self.stage else ""


def classify_model(model_id: str, base_dir: Path | None = None) -> ModelId:
    """Whether `model_id` is a built-in model, a local folder or a hub id, and its stage where known.

    A folder is an id that exists as a path (relative ones against `base_dir`, else the working
    directory) or is written as one (starting with ".", "/" or "~"); anything else is a hub id.
    """
    if model_id.startswith(BUILTIN_PREFIX):
        return ModelId(model_id, "builtin", BUILTIN_MODELS.get(model_id))
    path = Path(model_id).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if path.exists() or model_id.startswith((".", "/", "~")):
        return ModelId(model_id, "local", None, path)
    stage = next((f.stage for f in FLAVOURS.values() if f.hub_id.lower() == model_id.lower()), None)
    return ModelId(model_id, "hub", stage, path)


def text_dim(model_id: str) -> int:
    """The width of the text encoder a model's prompts go through: the tiny T5 for built-ins, else T5-XXL."""
    return TINY_TEXT_DIM if classify_model(model_id).kind == "builtin" else T5_XXL_DIM


def embed_bytes(dim: int, dtype_bytes: int) -> int:
    """Bytes of one prompt's embeds: prompt_embeds [TEXT_MAX_LENGTH, dim] at `dtype_bytes` an element."""
    return TEXT_MAX_LENGTH * dim * dtype_bytes
