"""What trains: LoRA adapters through peft, the UNet's biases (BitFit), or the whole UNet.

`use_bitfit` adds the UNet's own biases to what trains, beside the LoRA adapters. diffusers'
LoRA format has no place for a base layer's bias, so the trained biases go into their own
file, `bitfit_biases.safetensors`, next to `pytorch_lora_weights.safetensors`;
`floydtui.train.sampling.load_lora` applies both (plain `load_lora_weights` applies the LoRA
only). `model_type = "full"` trains every UNet weight and saves the whole UNet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from floydtui.config.schema import unmatched_targets, unmatched_targets_problem
from floydtui.errors import FloydError
from floydtui.fsutil import atomic_dir, atomic_path

LORA_FILE = "pytorch_lora_weights.safetensors"
BITFIT_FILE = "bitfit_biases.safetensors"


def setup_trainable(unet, training: dict[str, Any]) -> list:
    """Add adapters / unfreeze biases per the preset; returns the parameters that train (fp32)."""
    import torch

    if training["model_type"] == "full":
        unet.requires_grad_(True)
    else:
        from peft import LoraConfig

        targets = list(training["lora_target_modules"])
        # peft wraps Linear and Conv2d layers (a target naming a whole block is an error in peft)
        layers = [name for name, m in unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
        absent = unmatched_targets(layers, targets)
        if absent:
            raise FloydError([unmatched_targets_problem(absent, "this UNet")])
        unet.add_adapter(LoraConfig(r=training["lora_rank"], lora_alpha=training["lora_alpha"],
                                    lora_dropout=training["lora_dropout"], use_dora=training["use_dora"],
                                    init_lora_weights="gaussian", target_modules=targets))
    if training["use_bitfit"]:
        for name, p in unet.named_parameters():
            if name.endswith(".bias") and "lora_" not in name:
                p.requires_grad_(True)
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:  # trainable weights in fp32 (the frozen base stays in the weight dtype)
        p.data = p.data.to(torch.float32)
    _fp32_norms_with_trained_bias(unet)
    return params


def _fp32_norms_with_trained_bias(unet) -> None:
    """Run a norm layer whose bias trains (BitFit) in fp32, as a whole.

    Autocast does not cover layer/group norm on every device, and a norm cannot mix a
    bf16 weight with an fp32 bias: the layer computes in fp32 and hands back the input's dtype.
    """
    import torch

    for module in unet.modules():
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and module.bias is not None \
                and module.bias.requires_grad and module.weight is not None:
            module.weight.data = module.weight.data.float()
            module.register_forward_pre_hook(_upcast_input)
            module.register_forward_hook(_restore_dtype)


def _upcast_input(module, args):
    module._input_dtype = args[0].dtype
    return (args[0].float(), *args[1:])


def _restore_dtype(module, args, output):
    return output.to(module._input_dtype)


def trainable_state_dict(unet) -> dict:
    """Every trainable parameter by its UNet name (for checkpoints)."""
    return {n: p.detach().to("cpu").clone() for n, p in unet.named_parameters() if p.requires_grad}


def load_trainable_state_dict(unet, state: dict) -> None:
    """Restore the trainable parameters; raises FloydError when the checkpoint does not fit."""
    own = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    if set(own) != set(state) or any(own[n].shape != state[n].shape for n in own):
        raise FloydError.one("the checkpoint's trainable weights do not match this preset "
                             f"({len(state)} tensors saved, {len(own)} expected)",
                             hint="resume with the preset the run started with (lora_rank, lora_target_modules, "
                             "use_dora, use_bitfit, model), or start over with --resume none")
    for n, p in own.items():
        p.data.copy_(state[n].to(p.device, p.dtype))


def lora_layers(unet) -> dict:
    """The adapters in the PEFT key format that load_lora_weights reads for every module.

    Not convert_state_dict_to_diffusers: it renames to_q/to_k/to_v/to_out.0 to the old
    `lora.down`/`lora.up` names but leaves add_k_proj/add_v_proj as `lora_A`/`lora_B`, and
    the loader, seeing PEFT keys, then silently drops the attention layers.
    """
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().to("cpu").contiguous() for k, v in get_peft_model_state_dict(unet).items()}


def bitfit_biases(unet) -> dict:
    """The trained base-layer biases by their plain UNet names (adapter wrappers removed)."""
    return {name.replace(".base_layer.", "."): p.detach().to("cpu").contiguous()
            for name, p in unet.named_parameters()
            if p.requires_grad and name.endswith(".bias") and "lora_" not in name}


def apply_bitfit(unet, path: Path) -> int:
    """Copy saved BitFit biases into a UNet (with or without adapters); returns how many."""
    from safetensors.torch import load_file

    biases = load_file(str(path))
    params = {name.replace(".base_layer.", "."): p for name, p in unet.named_parameters()}
    unknown = [k for k in biases if k not in params]
    if unknown:
        raise FloydError.one(f"{path} has biases this UNet lacks ({unknown[0]}, ...)",
                             hint="load it into the base model the run trained")
    for k, v in biases.items():
        params[k].data.copy_(v.to(params[k].device, params[k].dtype))
    return len(biases)


def save_lora(output_dir: Path, unet, stage: int, training: dict[str, Any], *,
              metadata: dict[str, str] | None = None) -> Path:
    """Write the final weights: the LoRA file (diffusers format, + BitFit biases), or the whole UNet.

    The LoRA file's safetensors header carries the adapter's own config (so load_lora_weights
    rebuilds it with the trained lora_alpha and DoRA, not ones guessed from shapes) and
    `metadata`: floydtui's `floydtui_stage`, `base_model` and `flavour`, which `floydtui
    generate` reads to refuse a LoRA of the other stage.
    """
    from diffusers import IFPipeline, IFSuperResolutionPipeline
    from safetensors.torch import save_file

    if training["model_type"] == "full":
        with atomic_dir(output_dir / "unet") as tmp:
            unet.save_pretrained(tmp, safe_serialization=True)
        return output_dir / "unet"
    header = {"floydtui_stage": str(stage), **(metadata or {})}

    def save_with_header(weights: dict, filename: str) -> None:
        # diffusers' own writer adds {"format": "pt"} and the adapter config; this keeps both and adds floydtui's
        from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY

        meta = {"format": "pt", **header,
                LORA_ADAPTER_METADATA_KEY: json.dumps(adapter_config(unet), indent=2, sort_keys=True)}
        save_file(weights, filename, metadata=meta)

    cls = IFPipeline if stage == 1 else IFSuperResolutionPipeline
    with atomic_path(output_dir / LORA_FILE) as tmp:
        cls.save_lora_weights(tmp.parent, unet_lora_layers=lora_layers(unet), weight_name=tmp.name,
                              safe_serialization=True, save_function=save_with_header)
    if training["use_bitfit"]:
        with atomic_path(output_dir / BITFIT_FILE) as tmp:
            save_file(bitfit_biases(unet), str(tmp))
    return output_dir / LORA_FILE


def adapter_config(unet) -> dict[str, Any]:
    """The UNet's LoRA config as diffusers stores it in a LoRA file's header (`unet.`-prefixed keys)."""
    config = unet.peft_config["default"].to_dict()
    plain = json.loads(json.dumps(config, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))
    return {f"unet.{k}": v for k, v in plain.items()}


def lora_file_metadata(path: Path) -> dict[str, str]:
    """The safetensors header metadata of a LoRA file ({} when it has none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
