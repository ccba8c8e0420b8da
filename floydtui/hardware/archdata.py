"""The five flavours' architecture data, packaged: their diffusers configs and what was counted from them.

floydtui/config/if_configs/ holds each flavour's diffusers configs (UNet, schedulers, T5
encoder, model_index) with their provenance (SOURCES.md: IF-I-XL and IF-II-L are copies of the
published files, IF-I-M, IF-I-L and IF-II-M are inferred and labelled so) and exact parameter
counts (param_counts.json). arch_counts.json, next to this module, is what
bench/count_arch.py counted on the meta device from those configs: the LoRA parameters each
Linear and Conv2d adds per unit of rank, by module name (exactly what peft adds), and the FLOPs of a training
step. Reading JSON only: doctor and check never import torch.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from floydtui.config.flavours import T5_XXL_DIM

CONFIGS = Path(__file__).resolve().parent.parent / "config" / "if_configs"
ARCH_COUNTS = Path(__file__).resolve().parent / "arch_counts.json"

# floydtui's flavour names to the hub repositories' folder names.
FOLDERS = {
    "i-medium-400m": "IF-I-M-v1.0",
    "i-large-900m": "IF-I-L-v1.0",
    "i-xlarge-4.3b": "IF-I-XL-v1.0",
    "ii-medium-450m": "IF-II-M-v1.0",
    "ii-large-1.2b": "IF-II-L-v1.0",
}


def config_dir(flavour: str) -> Path:
    """The folder of a flavour's diffusers configs (unet/, scheduler/, text_encoder/, ...)."""
    return CONFIGS / FOLDERS[flavour]


def unet_config(flavour: str) -> dict:
    """The flavour's UNet config, without the provenance keys (those starting with "_")."""
    data = json.loads((config_dir(flavour) / "unet" / "config.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


@lru_cache(maxsize=1)
def param_counts() -> dict:
    """param_counts.json: exact UNet parameter counts per hub folder name."""
    return json.loads((CONFIGS / "param_counts.json").read_text(encoding="utf-8"))


def unet_params(flavour: str) -> int:
    """The flavour's exact UNet parameter count (counted on the meta device from its config)."""
    return int(param_counts()[FOLDERS[flavour]]["params"])


@lru_cache(maxsize=1)
def arch_counts() -> dict:
    """arch_counts.json (bench/count_arch.py): LoRA sizes and FLOPs per flavour."""
    return json.loads(ARCH_COUNTS.read_text(encoding="utf-8"))


def feature_elements(config: dict, resolution: int) -> int:
    """The elements of the feature maps one sample leaves at the UNet's blocks: the shape the
    activation memory follows (see estimate.ACTIVATION_BYTES_PER_ELEMENT).

    Each ResNet block and each attention block at width c on an s x s map counts c x s^2: the
    down path's layers_per_block blocks a level, its ResNet downsampler, the middle's two
    ResNets and attention, the up path's layers_per_block + 1 blocks a level and its ResNet
    upsampler. Closed form from the config: no torch.
    """
    channels = list(config["block_out_channels"])
    levels = len(channels)
    layers = config["layers_per_block"]
    layers = list(layers) if isinstance(layers, list) else [layers] * levels
    attention = ["CrossAttn" in t for t in config["down_block_types"]]
    total = 0
    for i, (c, n, attn) in enumerate(zip(channels, layers, attention)):
        side = resolution // 2 ** i
        total += n * c * side ** 2 * (2 if attn else 1)  # down path
        total += (n + 1) * c * side ** 2 * (2 if attn else 1)  # up path (one more block: the skip of the downsampler)
        if i < levels - 1:
            total += c * (side // 2) ** 2 + c * side ** 2  # the ResNet downsampler, the ResNet upsampler
    side = resolution // 2 ** (levels - 1)
    total += 3 * channels[-1] * side ** 2  # the middle: two ResNets and an attention block
    return total


def arch(name: str) -> dict:
    """What the estimator reads about a flavour or a built-in model: stage, native resolution,
    UNet parameters, LoRA parameters per rank by module name, feature elements, text width, FLOPs."""
    counts = arch_counts()
    entry = counts["flavours"].get(name) or counts["builtin"].get(name)
    if entry is None:
        raise KeyError(f"no architecture data for {name!r}")
    return _with_features(name, entry)


@lru_cache(maxsize=16)
def _features(name: str) -> int:
    entry = arch_counts()["flavours"].get(name) or arch_counts()["builtin"][name]
    config = entry.get("unet_config") or unet_config(name)
    return feature_elements(config, entry["resolution"])


def _with_features(name: str, entry: dict) -> dict:
    return {"text_dim": T5_XXL_DIM, **entry, "feature_elements": _features(name)}
