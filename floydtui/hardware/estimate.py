"""The memory estimator: how much GPU memory a preset needs, phase by phase.

A run has three phases (DESIGN.md section 7): `embed_cache` (T5-XXL encodes every caption,
before the UNet is loaded), `train` (the UNet, its trainable parameters, their gradients and
AdamW states, the activations of a batch) and `validation` (the UNet sampling the validation
sizes, with the optimizer states still resident). Each phase's figure is what the CUDA
caching allocator would hold at its peak, plus the CUDA context; the run's peak is the
largest phase.

Sizes come from the flavours' real configs (floydtui/config/if_configs/, hardware/archdata.py):
exact UNet parameter counts and exactly the LoRA parameters peft adds for the targets. The
activations are fitted to measured steps of the real-size UNets (bench/bench_memory.py, results
in bench/results/memory.json, held by tests/test_hardware_measured.py); the published figures
are a cross-check (calibration.py). Every constant says where it comes from.

Never imports torch or textual: doctor and check must stay fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from floydtui.config.flavours import (
    BUILTIN_MODELS,
    FLAVOURS,
    T5_XXL_DIM,
    TEXT_ENCODER_PARAMS,
    TEXT_MAX_LENGTH,
    Flavour,
    builtin_label,
    embed_bytes,
)
from floydtui.config.preset import Preset
from floydtui.config import schema
from floydtui.config.schema import FIELD_BY_KEY, matches_target
from floydtui.hardware import archdata
from floydtui.hardware.devices import Device

MIB = 1024 * 1024

# ---- bytes ----------------------------------------------------------------------------
# Bytes per element of each dtype (IEEE 754 single; bfloat16 and float16 are 16-bit).
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# AdamW keeps two states per trainable parameter, exp_avg and exp_avg_sq (Loshchilov & Hutter;
# torch.optim.AdamW). Their element size: "adamw" keeps them in fp32, "adamw_bf16" in bf16
# (floydtui's AdamWBF16States, SimpleTuner's pure-bf16 states), "adamw_8bit" in one byte
# (bitsandbytes AdamW8bit; used only to read the diffusers full-tune figure).
ADAM_STATES = 2
OPTIMIZER_STATE_BYTES = {"adamw": 4, "adamw_bf16": 2, "adamw_8bit": 1}
# floydtui's optimizers step one parameter at a time (AdamWBF16States; torch AdamW with
# foreach=False): their temporaries are one parameter's, nothing at the scale of the model.
# torch's default foreach AdamW (the diffusers scripts on CUDA) allocates one temporary per
# parameter at the state dtype, all at once.
FOREACH_STEP_TEMPORARIES = 1

# ---- model sizes ----------------------------------------------------------------------
# The published figures are for IF-I-XL (4.3B), the largest stage I flavour.
REFERENCE_FLAVOUR = FLAVOURS["i-xlarge-4.3b"]
# floydtui's LoRA targets (the schema's default): IF's six attention projections.
DEFAULT_TARGETS = tuple(FIELD_BY_KEY["lora_target_modules"][1].default)
# T5 v1.1 XXL's encoder (if_configs/*/text_encoder/config.json): 24 blocks, d_model T5_XXL_DIM
# (config.flavours), d_ff 10240 (gated GELU: wi_0, wi_1, wo), vocabulary 32128.
T5_BLOCKS = 24
T5_D_FF = 10240
T5_EMBED_PARAMS = 32128 * T5_XXL_DIM
# Streaming keeps the block running and the next one in flight on the GPU (double buffering).
T5_STREAM_RESIDENT_BLOCKS = 2
# Tensors alive at once inside a T5 block without grad: the two gated-FF halves and their
# product (d_ff wide), and about four d_model-wide ones (residual, norm, attention in/out).
T5_LIVE_WIDTHS = 3 * T5_D_FF + 4 * T5_XXL_DIM
# The built-in tiny models' T5 (floydtui/train/tiny.py): a few hundred thousand parameters.
TINY_TEXT_ENCODER_PARAMS = 5_000_000
# BitFit trains the biases: one per output channel of each c x c layer, so about 1/c of the
# parameters; 1/1000 is the share at IF's widths (192-2816). Not counted exactly (yet).
BITFIT_SHARE = 0.001

# ---- activations (fitted to bench/results/memory_gpu.json) -------------------------------
# What backward keeps per sample follows the feature maps the UNet's blocks leave
# (archdata.feature_elements: channels x pixels summed over the ResNet and attention blocks;
# it grows with the width and with the pixels). Bytes per such element, fp32, by (stage,
# gradient checkpointing), fitted by least squares (relative error) to
# torch.cuda.max_memory_allocated of LoRA steps on a GPU (an H200, torch 2.11, CUDA 13:
# bench/bench_gpu.py, the "fit" rows of bench/results/memory_gpu.json;
# calibration.fit_activation_constants): stage I on IF-I-M (batch 1 and 2, 64 and 128px) and
# IF-I-L, stage II on IF-II-M at 256px. The same cost per element comes out of both widths,
# which is what carries the fit to the other flavours: IF-I-XL and IF-II-L in bf16 are met
# within 3.5%, and 11 held-out settings (other batches, ranks and sizes) within -3.3..+6.8%.
# The CPU's measurement (bench/results/memory.json, the first fit) was 5-30% lower: CUDA's
# kernels and autocast keep more than the CPU's.
ACTIVATION_BYTES_PER_ELEMENT = {(1, False): 32.19, (1, True): 21.48, (2, False): 28.00, (2, True): 15.47}
# mixed_precision bf16 (floydtui: bf16 frozen weights, fp32 LoRA, CUDA autocast): most saved
# tensors are bf16, the norms' and the loss's fp32. bf16 activations over the fp32 model's, by
# gradient checkpointing, fitted to the bf16 GPU rows (calibration.fit_bf16_factor); the CPU's
# autocast gave 0.62, which under-estimated a GPU's bf16 step by up to 28%.
BF16_ACTIVATION_FACTOR = {False: 0.852, True: 0.709}
# peft's DoRA keeps each adapted layer's base output for the magnitude's backward: one more
# output per adapted projection, about a fifth more activation memory. Not measured.
DORA_ACTIVATION_FACTOR = 1.2
# Without xformers (AMD, Apple), sdpa may run its math kernel, which keeps the attention
# score matrices; IF attends only at its low-resolution levels, so a quarter more. The
# guide: AMD and Apple users cannot set xformers, "requiring more VRAM". Not measured.
MATH_ATTENTION_FACTOR = 1.25
# Sampling keeps no activations for backward: the skip connections held for the up path and
# one block's working set, about 15% of what training saves per image. Not measured.
INFERENCE_ACTIVATION_SHARE = 0.15
# Classifier-free guidance runs the conditional and unconditional image together.
CFG_BATCH = 2
# Tensors of a batch besides activations: fp32 pixels (clean, noise, noisy, target)
# and the T5 embeds (77 x 4096) at the weight dtype, per sample.
BATCH_PIXEL_TENSORS = 4

# ---- framework ----------------------------------------------------------------------------
# CUDA context and the kernels loaded on first use, with lazy loading: NVML's used memory
# minus torch's reserved. Measured on an H200 (driver 580, CUDA 13) in `floydtui run`'s own
# processes: about 660-700 MiB in a real-size IF-I-M run (its train and embed phases), about
# 850 MiB in the demo's; a process that had run every kind of step reached 1.4 GiB
# (bench/results/gpu.md). Not in torch.cuda.max_memory_allocated, nor in the CPU measurement.
CUDA_CONTEXT_MIB = 768
# The caching allocator holds more than is allocated (block rounding, fragmentation): the
# gap between torch.cuda.max_memory_reserved and max_memory_allocated of a LoRA step, measured
# on the GPU over 34 settings: 1-34%, mean 10.6%, the most with gradient checkpointing at
# 256px (bench/results/gpu.md).
ALLOCATOR_RESERVE = 0.10

# ---- verdicts -----------------------------------------------------------------------------
GRADIENT_ACCUMULATION_MAX = int(FIELD_BY_KEY["gradient_accumulation_steps"][1].max)  # the schema's limit
MIN_ADVICE_SAVING = 0.02  # advice must save at least 2% of the peak
TIGHT_HEADROOM = 0.10  # under 10% of the device left is "tight" (the definition)
VERDICTS = ("fits", "tight", "does_not_fit")  # best to worst
PHASES = ("embed_cache", "train", "validation")


@dataclass(frozen=True)
class Settings:
    """Everything the memory model reads: a preset's training keys, or a published run's."""

    flavour: str = "i-medium-400m"  # a FLAVOURS name or a built-in model id
    method: str = "lora"  # "lora" | "full"
    lora_rank: int = 32
    lora_targets: tuple[str, ...] = DEFAULT_TARGETS
    use_dora: bool = False
    use_bitfit: bool = False
    batch_size: int = 4
    resolution: int = 0  # 0: the flavour's native size
    gradient_checkpointing: bool = False
    weight_dtype: str = "bf16"  # the frozen weights and the forward pass: fp32 | bf16 | fp16
    optimizer: str = "adamw_bf16"  # adamw (fp32 states) | adamw_bf16 (bf16 states) | adamw_8bit
    # floydtui's setup_trainable keeps what trains in fp32; SimpleTuner's pure bf16 does not.
    trainable_dtype: str = "fp32"
    foreach_optimizer: bool = False  # torch's foreach AdamW (the diffusers scripts), not floydtui's
    text_encoder_placement: str = "gpu"  # gpu | stream | cpu (auto is resolved before)
    # T5 on a GPU: floydtui's embed cache runs it in bf16 whatever mixed_precision says
    # (embed_cache.encoder_dtype: fp16 overflows in T5, fp32 would double it), measured on an H200
    # with mixed_precision = "no" (bench/results/gpu.md); the diffusers scripts' fp16 is the same size.
    # GPUs without bf16 (before Ampere) get fp32 there, and place_encoder streams it when it does not fit.
    text_encoder_dtype: str = "bf16"
    embed_batch_size: int = 16
    unet_resident_while_embedding: bool = False  # diffusers' scripts encode with the UNet loaded
    text_encoder_resident_while_training: bool = False  # T5 kept on the GPU after caching (not floydtui)
    validation_sizes: tuple[tuple[int, int], ...] = ()  # () : one image at the training size
    math_attention: bool = False  # sdpa without flash kernels (AMD, Apple)
    label: str = ""

    @property
    def arch(self) -> dict:
        return archdata.arch(self.flavour)

    @property
    def stage(self) -> int:
        return self.arch["stage"]

    @property
    def unet_params(self) -> int:
        return self.arch["unet_params"]

    @property
    def size(self) -> int:
        """The training resolution in pixels (the flavour's native one when unset)."""
        return self.resolution or self.arch["resolution"]

    @property
    def builtin(self) -> bool:
        return self.flavour in BUILTIN_MODELS

    @property
    def text_encoder_params(self) -> int:
        return TINY_TEXT_ENCODER_PARAMS if self.builtin else TEXT_ENCODER_PARAMS

    @property
    def text_dim(self) -> int:
        return self.arch.get("text_dim", T5_XXL_DIM)


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
def lora_params(flavour: str, rank: int, targets: tuple[str, ...] = DEFAULT_TARGETS) -> int:
    """Exactly the parameters peft adds: rank x (in + out) of every Linear and Conv2d a target
    matches by peft's rule (the name or a dotted suffix of it), each module once."""
    modules = archdata.arch(flavour)["lora_modules"]
    return rank * sum(size for name, size in modules.items() if any(matches_target(name, t) for t in targets))


def unmatched_targets(flavour: str, targets: tuple[str, ...]) -> list[str]:
    """The targets that match no Linear or Conv2d of the flavour's UNet (peft would adapt nothing
    for them, and the trainer refuses them)."""
    return schema.unmatched_targets(archdata.arch(flavour)["lora_modules"], targets)


def activation_bytes(s: Settings, batch: int | None = None, size: float | None = None) -> float:
    """Bytes backward keeps for a batch (fitted; see ACTIVATION_BYTES_PER_ELEMENT)."""
    side = size or s.size
    elements = s.arch["feature_elements"] * (side / s.arch["resolution"]) ** 2
    factor = BF16_ACTIVATION_FACTOR[s.gradient_checkpointing] if s.weight_dtype != "fp32" else 1.0
    if s.method == "lora" and s.use_dora:
        factor *= DORA_ACTIVATION_FACTOR
    if s.math_attention:
        factor *= MATH_ATTENTION_FACTOR
    per_element = ACTIVATION_BYTES_PER_ELEMENT[(s.stage, s.gradient_checkpointing)]
    return (batch if batch is not None else s.batch_size) * elements * per_element * factor


def allocated_bytes(s: Settings) -> dict[str, float]:
    """The training step's peak as torch's allocator counts it (what bench_memory measures and
    torch.cuda.max_memory_allocated reports), by category."""
    trainable_bytes = DTYPE_BYTES[s.trainable_dtype]
    if s.method == "full":
        trainable = s.unet_params
        params = trainable * trainable_bytes
    else:
        trainable = lora_params(s.flavour, s.lora_rank, s.lora_targets)
        if s.use_bitfit:
            trainable += int(s.unet_params * BITFIT_SHARE)
        params = s.unet_params * DTYPE_BYTES[s.weight_dtype] + trainable * trainable_bytes
    state_bytes = OPTIMIZER_STATE_BYTES[s.optimizer]
    step_temporaries = trainable * state_bytes * FOREACH_STEP_TEMPORARIES if s.foreach_optimizer else 0
    return {
        "params": params,
        "gradients": trainable * trainable_bytes,
        "optimizer": trainable * ADAM_STATES * state_bytes + step_temporaries,
        "activations": activation_bytes(s),
        "batch": s.batch_size * (BATCH_PIXEL_TENSORS * 3 * s.size ** 2 * 4
                                 + embed_bytes(s.text_dim, DTYPE_BYTES[s.weight_dtype])),
    }


def trainable_count(s: Settings) -> int:
    if s.method == "full":
        return s.unet_params
    return lora_params(s.flavour, s.lora_rank, s.lora_targets) + (
        int(s.unet_params * BITFIT_SHARE) if s.use_bitfit else 0)


def _held(allocated: dict[str, float]) -> dict[str, int]:
    """A phase's parts in MiB, with the allocator's reserve and the CUDA context added."""
    parts = {k: int(round(v)) for k, v in allocated.items() if v > 0}
    parts["allocator_reserve"] = int(round(sum(allocated.values()) * ALLOCATOR_RESERVE))
    parts["cuda_context"] = CUDA_CONTEXT_MIB
    return parts


def estimate_settings(s: Settings) -> Estimate:
    """The estimate for explicit settings: doctor's flavour x method grid and the calibration table."""
    notes: list[str] = []
    parts = {k: v / MIB for k, v in allocated_bytes(s).items()}
    trainable = trainable_count(s)
    unet_mib = s.unet_params * DTYPE_BYTES[s.weight_dtype] / MIB
    train = _held({
        "unet_weights": parts["params"] if s.method == "full" else unet_mib,
        "trainable_params": 0.0 if s.method == "full" else parts["params"] - unet_mib,
        "gradients": parts["gradients"],
        "optimizer_states": parts["optimizer"],
        "activations": parts["activations"],
        "batch": parts["batch"],
        "text_encoder": s.text_encoder_params * DTYPE_BYTES[s.text_encoder_dtype] / MIB
        if s.text_encoder_resident_while_training else 0.0,
    })

    # Text-embed caching.
    te_bytes = DTYPE_BYTES[s.text_encoder_dtype]
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
    largest = max((w * h for w, h in s.validation_sizes), default=s.size ** 2)
    sampling_mib = (activation_bytes(replace(s, use_dora=False), batch=CFG_BATCH, size=math.sqrt(largest))
                    * INFERENCE_ACTIVATION_SHARE / MIB)
    validation = _held({
        "unet_weights": train["unet_weights"],
        "trainable_params": train.get("trainable_params", 0),
        "optimizer_states": parts["optimizer"],
        "sampling": sampling_mib,
    })

    breakdown = {"embed_cache": embed, "train": train, "validation": validation}
    phases = {name: sum(p.values()) for name, p in breakdown.items()}
    peak_phase = max(PHASES, key=lambda p: phases[p])

    # Why: the lines a user reads next to the number.
    if s.text_encoder_placement == "gpu":
        notes.append(f"text encoder (T5) on the GPU in {s.text_encoder_dtype} while caching embeds: "
                     f"{gib(embed_parts['text_encoder'])}")
    elif s.text_encoder_placement == "stream":
        notes.append(f"text encoder streamed from CPU memory, {T5_STREAM_RESIDENT_BLOCKS} of its {T5_BLOCKS} "
                     f"blocks on the GPU at a time: {gib(embed_parts['text_encoder_blocks'])}")
    else:
        notes.append("text encoder on the CPU while caching embeds: no GPU memory, slower caching")
    if s.unet_resident_while_embedding:
        notes.append("the UNet is loaded while captions are encoded (the diffusers scripts' order)")
    elif s.text_encoder_resident_while_training:
        notes.append("T5 stays on the GPU while training: its weights add to the training step's memory")
    else:
        notes.append("embeds precomputed: T5 not resident while training (its memory is free for the UNet)")
    optimizer_mib = parts["gradients"] + parts["optimizer"] + (0 if s.method == "full" else parts["params"] - unet_mib)
    if s.method == "full":
        notes.append(f"full UNet tune: {trainable / 1e6:,.0f}M parameters trained in {s.trainable_dtype}, "
                     f"gradients and AdamW states ({s.optimizer}): {gib(parts['params'] + optimizer_mib)}")
    else:
        notes.append(f"UNet frozen in {s.weight_dtype}: {gib(unet_mib)}; "
                     f"{'DoRA' if s.use_dora else 'LoRA'} rank {s.lora_rank}"
                     f"{' + BitFit biases' if s.use_bitfit else ''}: {trainable / 1e6:.2f}M trainable "
                     f"parameters in {s.trainable_dtype} with gradients and AdamW states ({s.optimizer}): "
                     f"{gib(optimizer_mib)}")
    if s.weight_dtype == "fp32":
        notes.append("mixed_precision = \"no\": weights and activations in fp32")
    elif s.trainable_dtype == "fp32":
        notes.append(f"{s.weight_dtype} weights under autocast, trainables in fp32: activations "
                     f"x{BF16_ACTIVATION_FACTOR[s.gradient_checkpointing]} of fp32's (measured on a GPU)")
    else:
        notes.append(f"pure {s.weight_dtype}: trainables, gradients and optimizer states in {s.weight_dtype}")
    without = activation_bytes(replace(s, gradient_checkpointing=not s.gradient_checkpointing)) / MIB
    notes.append(f"activations: batch {s.batch_size} at {s.size}x{s.size}: {gib(parts['activations'])}"
                 + (f" (gradient checkpointing on; off: {gib(without)})" if s.gradient_checkpointing else
                    f" (gradient checkpointing would make it {gib(without)})"))
    if s.flavour == REFERENCE_FLAVOUR.name:
        notes.append("IF-I-XL's activations are derived from IF-I-M and IF-I-L (the same layout at other widths), "
                     "measured; XL itself does not fit the benchmark machine")
    if s.math_attention:
        notes.append(f"no xformers or flash attention on this GPU: activations x{MATH_ATTENTION_FACTOR} (not measured)")
    if not s.builtin and s.unet_params < REFERENCE_FLAVOUR.unet_params:
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
    model_id = preset.model["pretrained_model_name_or_path"]
    builtin = model_id in BUILTIN_MODELS
    flavour: Flavour = preset.flavour
    s = Settings(
        flavour=model_id if builtin else flavour.name,
        method=t["model_type"],
        lora_rank=t["lora_rank"],
        lora_targets=tuple(t["lora_target_modules"]),
        use_dora=t["use_dora"],
        use_bitfit=t["use_bitfit"],
        batch_size=t["train_batch_size"],
        resolution=t["resolution"],
        gradient_checkpointing=t["gradient_checkpointing"],
        weight_dtype="fp32" if t["mixed_precision"] == "no" else t["mixed_precision"],
        optimizer=t["optimizer"],
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
        a = archdata.arch(settings_from_preset(preset).flavour)
        slower = a["train_flops_per_sample_checkpointing"] / a["train_flops_per_sample"] - 1  # counted
        if attempt(f"gradient checkpointing, about {slower:.0%} slower", {"gradient_checkpointing": True}):
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
