"""The memory estimator: how much GPU memory a preset needs, phase by phase.

A run has three phases (DESIGN.md section 7): `embed_cache` (T5-XXL encodes every caption,
before the UNet is loaded), `train` (the UNet, its trainable parameters, their gradients and
AdamW states, the activations of a batch) and `validation` (the UNet sampling the validation
sizes, with the optimizer states still resident). Each phase's figure is what the CUDA
caching allocator would hold at its peak, plus the CUDA context; the run's peak is the
largest phase.

Every constant is documented where it is defined, with its source. The activation constants
are not derivable from parameter counts: they are what the published peaks imply (see
calibration.py, which reads each source and which the tests hold the model to).

Never imports torch or textual: doctor and check must stay fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from floydtui.config.flavours import (
    BUILTIN_MODELS,
    FLAVOURS,
    TEXT_ENCODER_PARAMS,
    TEXT_MAX_LENGTH,
    Flavour,
    builtin_label,
)
from floydtui.config.preset import Preset
from floydtui.config.schema import FIELD_BY_KEY
from floydtui.hardware.devices import Device, xformers_available  # noqa: F401 (the API offers it here too)

MIB = 1024 * 1024

# ---- bytes ----------------------------------------------------------------------------
# Bytes per element of each dtype (IEEE 754 single; bfloat16 and float16 are 16-bit).
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# AdamW keeps two states per trainable parameter, exp_avg and exp_avg_sq (Loshchilov & Hutter;
# torch.optim.AdamW). Their element size: "adamw" keeps them in fp32, "adamw_bf16" in bf16
# (SimpleTuner's pure-bf16 AdamW), "adamw_8bit" in one byte (bitsandbytes AdamW8bit; used
# only to read the diffusers full-tune figure, floydtui does not offer it).
ADAM_STATES = 2
OPTIMIZER_STATE_BYTES = {"adamw": 4, "adamw_bf16": 2, "adamw_8bit": 1}
# torch's foreach AdamW step allocates one temporary per parameter (the sqrt of exp_avg_sq)
# at the state dtype; bitsandbytes' 8-bit step updates in place.
OPTIMIZER_STEP_TEMPORARIES = {"adamw": 1, "adamw_bf16": 1, "adamw_8bit": 0}

# ---- model sizes ----------------------------------------------------------------------
# The calibration reference: IF-I-XL, 4.3B UNet parameters (flavours.py, DeepFloyd's model zoo).
REFERENCE_FLAVOUR = FLAVOURS["i-xlarge-4.3b"]
REFERENCE_RESOLUTION = 64  # stage I's native size; the published figures are all at 64px
# The built-in tiny models (DESIGN.md section 8: "a few million parameters at most"): an
# upper bound, so the demo's estimate is never low.
TINY_UNET_PARAMS = 5_000_000
TINY_TEXT_ENCODER_PARAMS = 5_000_000
# T5 v1.1 XXL's encoder (google/t5-v1_1-xxl config.json): 24 blocks, d_model 4096, d_ff 10240
# (gated GELU: wi_0, wi_1, wo), vocabulary 32128. 24 x (4*4096^2 + 3*4096*10240) + 32128*4096
# = 4.76B, which is TEXT_ENCODER_PARAMS (flavours.py).
T5_BLOCKS = 24
T5_D_MODEL = 4096
T5_D_FF = 10240
T5_EMBED_PARAMS = 32128 * 4096
# Streaming keeps the block running and the next one in flight on the GPU (double buffering).
T5_STREAM_RESIDENT_BLOCKS = 2
# Tensors alive at once inside a T5 block without grad: the two gated-FF halves and their
# product (d_ff wide), and about four d_model-wide ones (residual, norm, attention in/out).
T5_LIVE_WIDTHS = 3 * T5_D_FF + 4 * T5_D_MODEL

# LoRA parameter count. Each adapted linear (to_q, to_k, to_v, to_out.0, add_k_proj,
# add_v_proj: the schema's default targets) is about c x c for its block's width c, and LoRA
# adds r*(c + c). Reading: those attention projections hold a quarter of IF's UNet
# parameters, at a width of 2048 in IF-I-XL (its widest, low-resolution levels, where IF puts
# attention), and width grows with sqrt(params) across flavours of the same depth. So LoRA
# params = r * 2 * (share * P / c) with c = 2048 * sqrt(P / P_xl): 33.6M at rank 32 for XL.
LORA_TARGET_SHARE = 0.25
LORA_REFERENCE_WIDTH = 2048
# BitFit trains the biases: one per output channel of each c x c layer, so about 1/c of the
# parameters; 1/1000 is the share at IF's widths (512-2048).
BITFIT_SHARE = 0.001

# ---- activations ------------------------------------------------------------------------
# What backward keeps from one 64x64 sample through IF-I-XL in pure bf16, without gradient
# checkpointing, including the caching allocator's rounding: 3.0 GiB. Calibrated: it is the
# value with which this model reproduces SimpleTuner's 22G, the guide's ~24G and the
# diffusers 28G at once (calibration.py). Not derivable from the parameter count alone.
ACTIVATION_MIB_PER_SAMPLE = 3072
# Across flavours: IF's stage I UNets differ mainly in width; activations grow with width,
# parameters with width squared, so activations scale with sqrt(params). Across sizes:
# every feature map scales with pixels, (resolution / 64)^2.
ACTIVATION_PARAM_EXPONENT = 0.5
# Under autocast with fp32 trainables (the diffusers way), group_norm and softmax run in fp32
# (torch.autocast's fp32 op list), so each norm's input and output and the SiLU after it are
# saved at 4 bytes: a ResNet half-block saves ~5 half-size units instead of 3. Calibrated at
# 1.4 against the diffusers 28G (calibration.py); the guide's "pure-bf16" saving is this.
AUTOCAST_ACTIVATION_FACTOR = 1.4
# Stage II (64->256 upscalers) puts its narrowest levels at full resolution, the Imagen
# super-resolution UNet pattern, so per pixel it keeps less than the width rule above gives.
# Read against the diffusers stage II full-tune example (IF-II-L, batch 2 at 256px), which
# ran on one GPU: at 1.0 the model puts it above 80 GiB, the largest single GPU of 2023.
STAGE2_ACTIVATION_SCALE = 0.75
# mixed_precision = "no": every saved tensor is fp32, twice bf16.
FP32_ACTIVATION_FACTOR = 2.0
# diffusers' UNet checkpoints every ResNet and attention block: backward keeps each block's
# input (one of the 6-10 tensors a block saves) and recomputes one block at a time. 0.3 is
# a cautious reading of that; the GPU benchmark's measured peaks will correct it.
GRADIENT_CHECKPOINTING_FACTOR = 0.3
# peft's DoRA keeps each adapted layer's base output for the magnitude's backward: one more
# output per adapted projection, about a fifth more activation memory.
DORA_ACTIVATION_FACTOR = 1.2
# Without xformers (AMD, Apple), sdpa may run its math kernel, which keeps the attention
# score matrices; IF attends only at its low-resolution levels, so a quarter more. The
# guide: AMD and Apple users cannot set xformers, "requiring more VRAM".
MATH_ATTENTION_FACTOR = 1.25
# Backward walks the UNet from its last (high-resolution up) blocks to its first: by the time
# every gradient exists, the down path's activations (about half) are still held.
DOWN_PATH_ACTIVATION_SHARE = 0.5
# Sampling keeps no activations for backward: the skip connections held for the up path and
# one block's working set, about 15% of what training saves per image.
INFERENCE_ACTIVATION_SHARE = 0.15
# Classifier-free guidance runs the conditional and unconditional image together.
CFG_BATCH = 2
# Tensors of a batch besides activations: fp32 pixels (clean, noise, noisy, target)
# and the bf16 T5 embeds (77 x 4096), per sample.
BATCH_PIXEL_TENSORS = 4
EMBED_BYTES_PER_SAMPLE = TEXT_MAX_LENGTH * T5_D_MODEL * 2

# ---- framework ----------------------------------------------------------------------------
# CUDA context, cuBLAS/cuDNN workspaces and kernels loaded on first use: 0.5-1 GiB on current
# NVIDIA drivers with lazy loading (nvidia-smi before any tensor is allocated); 0.75 GiB.
CUDA_CONTEXT_MIB = 768
# The caching allocator holds more than is allocated (block rounding, fragmentation): the
# gap between torch.cuda.max_memory_reserved and max_memory_allocated, typically 5-10%.
ALLOCATOR_RESERVE = 0.07

# ---- verdicts -----------------------------------------------------------------------------
GRADIENT_ACCUMULATION_MAX = int(FIELD_BY_KEY["gradient_accumulation_steps"][1].max)  # the schema's limit
MIN_ADVICE_SAVING = 0.02  # advice must save at least 2% of the peak
TIGHT_HEADROOM = 0.10  # under 10% of the device left is "tight" (the definition)
VERDICTS = ("fits", "tight", "does_not_fit")  # best to worst
PHASES = ("embed_cache", "train", "validation")


@dataclass(frozen=True)
class Settings:
    """Everything the memory model reads: a preset's training keys, or a published run's."""

    unet_params: int
    stage: int = 1
    method: str = "lora"  # "lora" | "full"
    lora_rank: int = 32
    use_dora: bool = False
    use_bitfit: bool = False
    batch_size: int = 4
    resolution: int = 64
    gradient_checkpointing: bool = False
    weight_dtype: str = "bf16"  # the frozen weights and the forward pass: fp32 | bf16 | fp16
    optimizer: str = "adamw_bf16"  # adamw (fp32 trainables under autocast) | adamw_bf16 (pure) | adamw_8bit
    text_encoder_placement: str = "gpu"  # gpu | stream | cpu (auto is resolved before)
    text_encoder_params: int = TEXT_ENCODER_PARAMS
    embed_batch_size: int = 16
    unet_resident_while_embedding: bool = False  # diffusers' scripts encode with the UNet loaded
    validation_sizes: tuple[tuple[int, int], ...] = ((64, 64),)
    math_attention: bool = False  # sdpa without flash kernels (AMD, Apple)
    label: str = ""

    @property
    def trainable_dtype(self) -> str:
        """Pure-bf16 AdamW trains at the weight dtype; the others keep fp32 trainables."""
        return self.weight_dtype if self.optimizer == "adamw_bf16" else "fp32"

    @property
    def autocast(self) -> bool:
        return self.trainable_dtype == "fp32" and self.weight_dtype != "fp32"


@dataclass
class Estimate:
    """MiB per phase, the peak and the phase that sets it, the parts of each phase, and why."""

    phases: dict[str, int]
    peak_mib: int
    peak_phase: str
    breakdown: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"peak_mib": self.peak_mib, "peak_phase": self.peak_phase, "phases": dict(self.phases),
                "breakdown": {k: dict(v) for k, v in self.breakdown.items()}, "notes": list(self.notes)}


@dataclass
class Advice:
    """A change that lowers the peak: the preset keys to set (cumulative with earlier advice)."""

    change: str
    overrides: dict[str, object]
    peak_mib: int
    verdict: str


# ---- the model ------------------------------------------------------------------------------
def lora_params(unet_params: int, rank: int) -> int:
    """Trainable LoRA parameters for a UNet of this size at this rank (see LORA_TARGET_SHARE)."""
    width = LORA_REFERENCE_WIDTH * math.sqrt(unet_params / REFERENCE_FLAVOUR.unet_params)
    return int(rank * 2 * LORA_TARGET_SHARE * unet_params / width)


def activation_mib_per_sample(unet_params: int, width: float, height: float, stage: int = 1) -> float:
    """Pure-bf16 training activations of one sample of width x height (see ACTIVATION_MIB_PER_SAMPLE)."""
    size = (unet_params / REFERENCE_FLAVOUR.unet_params) ** ACTIVATION_PARAM_EXPONENT
    per_pixel = STAGE2_ACTIVATION_SCALE if stage == 2 else 1.0
    return ACTIVATION_MIB_PER_SAMPLE * size * per_pixel * (width * height) / REFERENCE_RESOLUTION ** 2


def _held(allocated: dict[str, float]) -> dict[str, int]:
    """A phase's parts in MiB, with the allocator's reserve and the CUDA context added."""
    parts = {k: int(round(v)) for k, v in allocated.items() if v > 0}
    parts["allocator_reserve"] = int(round(sum(allocated.values()) * ALLOCATOR_RESERVE))
    parts["cuda_context"] = CUDA_CONTEXT_MIB
    return parts


def estimate_settings(s: Settings) -> Estimate:
    """The estimate for explicit settings: doctor's flavour x method grid and the calibration table."""
    notes: list[str] = []
    wbytes = DTYPE_BYTES[s.weight_dtype]
    tbytes = DTYPE_BYTES[s.trainable_dtype]
    sbytes = OPTIMIZER_STATE_BYTES[s.optimizer]
    unet_mib = s.unet_params * wbytes / MIB

    # What is trained, and what stays frozen.
    if s.method == "full":
        trainable = s.unet_params
        frozen_mib = 0.0
    else:
        trainable = lora_params(s.unet_params, s.lora_rank)
        if s.use_bitfit:
            trainable += int(s.unet_params * BITFIT_SHARE)
        frozen_mib = unet_mib
    trainable_mib = trainable * tbytes / MIB
    grads_mib = trainable * tbytes / MIB
    states_mib = trainable * ADAM_STATES * sbytes / MIB
    step_temp_mib = trainable * OPTIMIZER_STEP_TEMPORARIES[s.optimizer] * sbytes / MIB

    # Activations of one batch.
    factor = 1.0
    if s.weight_dtype == "fp32":
        factor *= FP32_ACTIVATION_FACTOR
    elif s.autocast:
        factor *= AUTOCAST_ACTIVATION_FACTOR
    if s.gradient_checkpointing:
        factor *= GRADIENT_CHECKPOINTING_FACTOR
    if s.method == "lora" and s.use_dora:
        factor *= DORA_ACTIVATION_FACTOR
    if s.math_attention:
        factor *= MATH_ATTENTION_FACTOR
    per_sample = activation_mib_per_sample(s.unet_params, s.resolution, s.resolution, s.stage)
    activations_mib = per_sample * s.batch_size * factor
    batch_mib = s.batch_size * (BATCH_PIXEL_TENSORS * 3 * s.resolution ** 2 * 4 + EMBED_BYTES_PER_SAMPLE) / MIB
    # Backward ends with every gradient and the down path's activations; the step adds its temporaries.
    dynamic = max(activations_mib, grads_mib + DOWN_PATH_ACTIVATION_SHARE * activations_mib,
                  grads_mib + step_temp_mib)
    train = _held({
        "unet_weights": frozen_mib if s.method == "lora" else trainable_mib,
        "trainable_params": trainable_mib if s.method == "lora" else 0.0,
        "optimizer_states": states_mib,
        "activations_and_gradients": dynamic,
        "batch": batch_mib,
    })

    # Text-embed caching.
    te_bytes = DTYPE_BYTES[s.weight_dtype]
    te_live = s.embed_batch_size * TEXT_MAX_LENGTH * T5_LIVE_WIDTHS * te_bytes / MIB
    block_mib = s.text_encoder_params * (1 - T5_EMBED_PARAMS / TEXT_ENCODER_PARAMS) / T5_BLOCKS * te_bytes / MIB
    embed_parts: dict[str, float] = {}
    if s.text_encoder_placement == "gpu":
        embed_parts["text_encoder"] = s.text_encoder_params * te_bytes / MIB
        embed_parts["encoder_activations"] = te_live
    elif s.text_encoder_placement == "stream":
        embed_parts["text_encoder_blocks"] = T5_STREAM_RESIDENT_BLOCKS * block_mib
        embed_parts["encoder_activations"] = te_live
    if s.unet_resident_while_embedding:
        embed_parts["unet_weights"] = unet_mib
    embed = _held(embed_parts)

    # Validation: the optimizer's state stays, gradients are freed, the UNet samples each size.
    largest = max((w * h for w, h in s.validation_sizes), default=s.resolution ** 2)
    side = math.sqrt(largest)
    sample_factor = FP32_ACTIVATION_FACTOR if s.weight_dtype == "fp32" else 1.0
    sampling_mib = (activation_mib_per_sample(s.unet_params, side, side, s.stage) * INFERENCE_ACTIVATION_SHARE
                    * CFG_BATCH * sample_factor * (MATH_ATTENTION_FACTOR if s.math_attention else 1.0))
    validation = _held({
        "unet_weights": frozen_mib if s.method == "lora" else trainable_mib,
        "trainable_params": trainable_mib if s.method == "lora" else 0.0,
        "optimizer_states": states_mib,
        "sampling": sampling_mib,
    })

    breakdown = {"embed_cache": embed, "train": train, "validation": validation}
    phases = {name: sum(parts.values()) for name, parts in breakdown.items()}
    peak_phase = max(PHASES, key=lambda p: phases[p])

    # Why: the lines a user reads next to the number.
    if s.text_encoder_placement == "gpu":
        notes.append(f"text encoder (T5) on the GPU in {s.weight_dtype} while caching embeds: "
                     f"{gib(embed_parts['text_encoder'])}")
    elif s.text_encoder_placement == "stream":
        notes.append(f"text encoder streamed from CPU memory, {T5_STREAM_RESIDENT_BLOCKS} of its {T5_BLOCKS} "
                     f"blocks on the GPU at a time: {gib(embed_parts['text_encoder_blocks'])}")
    else:
        notes.append("text encoder on the CPU while caching embeds: no GPU memory, slower caching")
    if s.unet_resident_while_embedding:
        notes.append("the UNet is loaded while captions are encoded (the diffusers scripts' order)")
    else:
        notes.append("embeds precomputed: T5 not resident while training (its memory is free for the UNet)")
    if s.method == "full":
        notes.append(f"full UNet tune: {trainable / 1e6:,.0f}M parameters trained in {s.trainable_dtype}, "
                     f"gradients and AdamW states ({s.optimizer}): {gib(trainable_mib + grads_mib + states_mib)}")
    else:
        notes.append(f"UNet frozen in {s.weight_dtype}: {gib(frozen_mib)}; "
                     f"{'DoRA' if s.use_dora else 'LoRA'} rank {s.lora_rank}"
                     f"{' + BitFit biases' if s.use_bitfit else ''}: {trainable / 1e6:.1f}M trainable "
                     f"parameters with gradients and AdamW states: {gib(trainable_mib + grads_mib + states_mib)}")
    if s.weight_dtype == "fp32":
        notes.append("mixed_precision = \"no\": weights and activations in fp32, twice bf16")
    elif s.autocast:
        notes.append(f"fp32 trainables under autocast (optimizer = \"{s.optimizer}\"): norms and softmax saved "
                     f"in fp32, activations x{AUTOCAST_ACTIVATION_FACTOR}")
    else:
        notes.append(f"pure {s.weight_dtype}: trainables, gradients and optimizer states in {s.weight_dtype}, "
                     "no autocast copies")
    notes.append(f"activations: batch {s.batch_size} at {s.resolution}x{s.resolution}: {gib(activations_mib)}"
                 + (" (gradient checkpointing on)" if s.gradient_checkpointing else
                    f" (gradient checkpointing would make it {gib(activations_mib * GRADIENT_CHECKPOINTING_FACTOR)})"))
    if s.stage == 2:
        notes.append(f"stage II trains at its {s.resolution}px output size: no published peak yet, activations "
                     f"scaled from stage I's by pixels, x{STAGE2_ACTIVATION_SCALE} for its narrow full-size levels")
    if s.math_attention:
        notes.append(f"no xformers or flash attention on this GPU: attention x{MATH_ATTENTION_FACTOR}")
    if s.unet_params < REFERENCE_FLAVOUR.unet_params:
        notes.append(f"a {_params_label(s.unet_params)} UNet: {REFERENCE_FLAVOUR.unet_params / s.unet_params:.0f}x "
                     "smaller than IF-I-XL, which the published 22-28G figures are for")
    notes.append(f"peak: {peak_phase} ({gib(phases[peak_phase])})")
    return Estimate(phases=phases, peak_mib=phases[peak_phase], peak_phase=peak_phase,
                    breakdown=breakdown, notes=notes)


def gib(mib: float) -> str:
    """MiB as the GiB figure users compare with their card."""
    return f"{mib / 1024:.1f} GiB"


def _params_label(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


# ---- presets ---------------------------------------------------------------------------------
def settings_from_preset(preset: Preset, device: Device | None = None) -> Settings:
    """A preset's settings on a device; `auto` text-encoder placement is resolved for it."""
    t = preset.training
    builtin = preset.model["pretrained_model_name_or_path"] in BUILTIN_MODELS
    flavour: Flavour = preset.flavour
    s = Settings(
        unet_params=TINY_UNET_PARAMS if builtin else flavour.unet_params,
        stage=flavour.stage,
        method=t["model_type"],
        lora_rank=t["lora_rank"],
        use_dora=t["use_dora"],
        use_bitfit=t["use_bitfit"],
        batch_size=t["train_batch_size"],
        resolution=t["resolution"],
        gradient_checkpointing=t["gradient_checkpointing"],
        weight_dtype="fp32" if t["mixed_precision"] == "no" else t["mixed_precision"],
        optimizer=t["optimizer"],
        text_encoder_params=TINY_TEXT_ENCODER_PARAMS if builtin else TEXT_ENCODER_PARAMS,
        embed_batch_size=t["embed_batch_size"],
        validation_sizes=tuple(preset.validation_sizes),
        math_attention=device is not None and device.backend in ("rocm", "mps"),
        label=f"{flavour.name} {t['model_type']}" + (f" ({preset.model['pretrained_model_name_or_path']})"
                                                     if builtin else ""),
    )
    return replace(s, text_encoder_placement=resolve_placement(t["text_encoder_placement"], s, device))


def resolve_placement(placement: str, s: Settings, device: Device | None) -> str:
    """`auto`: on the GPU when T5 fits there with headroom, else streamed; on the GPU with no device given."""
    if placement != "auto":
        return placement
    if device is None or not device.is_gpu:
        return "gpu"
    on_gpu = estimate_settings(replace(s, text_encoder_placement="gpu")).phases["embed_cache"]
    return "gpu" if verdict_for(on_gpu, device) == "fits" else "stream"


def estimate(preset: Preset, device: Device | None = None) -> Estimate:
    """The memory a preset needs, phase by phase, on this device (None: placement auto = gpu)."""
    s = settings_from_preset(preset, device)
    est = estimate_settings(s)
    if preset.model["pretrained_model_name_or_path"] in BUILTIN_MODELS:
        base = preset.model["pretrained_model_name_or_path"]
        est.notes.insert(0, f"{base}: the built-in tiny model ({builtin_label(base)}), a few million parameters; "
                            "not the real flavour's memory")
    if preset.training["text_encoder_placement"] == "auto":
        est.notes.insert(0, f"text_encoder_placement auto -> {s.text_encoder_placement}"
                            + ("" if device else " (no device given)"))
    return est


def verdict_for(peak_mib: int, device: Device | None) -> str:
    """fits, tight (under 10% of the device left) or does_not_fit."""
    if device is None or device.total_mib <= 0 or peak_mib > device.total_mib:
        return "does_not_fit"
    headroom = (device.total_mib - peak_mib) / device.total_mib
    return "tight" if headroom < TIGHT_HEADROOM else "fits"


def verdict(est: Estimate, device: Device | None) -> str:
    """The estimate against the device's total memory: fits, tight or does_not_fit."""
    return verdict_for(est.peak_mib, device)


# ---- advice ------------------------------------------------------------------------------------
def _smaller_flavours(flavour: Flavour) -> list[Flavour]:
    same = [f for f in FLAVOURS.values() if f.stage == flavour.stage and f.unet_params < flavour.unet_params]
    return sorted(same, key=lambda f: -f.unet_params)


def advice(preset: Preset, device: Device | None) -> list[Advice]:
    """The cheapest changes that make the preset fit, in order; each one's overrides include
    the earlier ones', so `preset.with_overrides(a.overrides)` has `a.peak_mib`. Empty when it fits."""
    current = estimate(preset, device)
    if verdict(current, device) == "fits" or device is None:
        return []
    out: list[Advice] = []
    overrides: dict[str, object] = {}
    peak = current.peak_mib

    def attempt(change: str, extra: dict[str, object]) -> bool:
        nonlocal peak
        trial = {**overrides, **extra}
        est = estimate(preset.with_overrides(trial), device)
        if est.peak_mib > peak * (1 - MIN_ADVICE_SAVING):
            return False  # it would hardly lower the peak: not worth the user's trouble
        overrides.update(extra)
        peak = est.peak_mib
        out.append(Advice(change, dict(trial), est.peak_mib, verdict(est, device)))
        return out[-1].verdict == "fits"

    t = preset.training
    if t["optimizer"] != "adamw_bf16" and t["mixed_precision"] != "no":
        if attempt("pure-bf16 optimizer states (optimizer = \"adamw_bf16\")", {"optimizer": "adamw_bf16"}):
            return out
    if not t["gradient_checkpointing"]:
        if attempt("gradient checkpointing, about 20% slower", {"gradient_checkpointing": True}):
            return out
    batch, accumulation = t["train_batch_size"], t["gradient_accumulation_steps"]
    for smaller in _halvings(batch):
        steps = accumulation * math.ceil(batch / smaller)
        if steps > GRADIENT_ACCUMULATION_MAX:
            break
        change = {"train_batch_size": smaller, "gradient_accumulation_steps": steps}
        est = estimate(preset.with_overrides({**overrides, **change}), device)
        if verdict(est, device) == "fits" or smaller == 1:
            if attempt(f"batch {smaller} with {steps} accumulation steps (same effective batch)", change):
                return out
            break
    if t["text_encoder_placement"] in ("auto", "gpu"):
        if attempt("stream the text encoder from CPU memory while caching embeds",
                   {"text_encoder_placement": "stream"}):
            return out
    for smaller in _smaller_flavours(preset.flavour):
        if attempt(f"a smaller flavour: {smaller.name} ({smaller.params_label} UNet)",
                   {"model_flavour": smaller.name, "pretrained_model_name_or_path": "auto"}):
            return out
    return out


def _halvings(batch: int) -> list[int]:
    out, b = [], batch
    while b > 1:
        b //= 2
        out.append(b)
    return out
