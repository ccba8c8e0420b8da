"""The time estimate: about how long a training step, the whole run and the embed cache take.

Work is counted, not guessed: the FLOPs of one LoRA training step per sample were counted
from each flavour's real architecture (torch.utils.flop_counter.FlopCounterMode on the meta
device, bench/count_arch.py, stored in hardware/arch_counts.json), and grow with the pixels.
A device's rate is its dense bf16 peak from GPU_BF16_TFLOPS times GPU_EFFICIENCY, or, on a
CPU, the training rate per core measured on the benchmark machine times this machine's cores.
Never imports torch.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from floydtui.hardware import archdata
from floydtui.hardware.devices import Device

# Dense (no sparsity) bf16 tensor-core peaks with fp32 accumulation, TFLOP/s, from the
# vendors' data sheets and architecture whitepapers (GeForce cards: the "FP32 accumulate"
# column). Matched against the device's name, the longest key first.
GPU_BF16_TFLOPS = {
    "RTX 3090 Ti": 80, "RTX 3090": 71, "RTX 3080": 60, "RTX 4080": 97, "RTX 4090": 165, "RTX 5080": 113,
    "RTX 5090": 209, "RTX A6000": 155, "A6000": 155, "RTX 6000 Ada": 364, "A40": 150, "A10": 125, "L4": 121,
    "L40S": 362, "L40": 181, "A100": 312, "H100 PCIe": 756, "H100": 989, "H200": 989, "GH200": 989, "B200": 2250,
    "MI250X": 383, "MI300X": 1307, "Radeon RX 7900 XTX": 123,
}
# A LoRA step of a UNet at batch 4 reaches about a third of a GPU's peak: small matrices at
# the low-resolution levels, group norms and elementwise work between them. Stated, not
# measured here (no GPU on the benchmark machine); bench_gpu.py measures it where one is.
GPU_EFFICIENCY = 0.35
# What a step costs on a GPU beside its FLOPs: a few thousand kernel launches (the UNet's
# forward and backward, and the optimizer's loop over each LoRA tensor) at about 10 us each.
# Stated, not measured here; it matters only for the small flavours on fast cards.
GPU_STEP_OVERHEAD_S = 0.05
# A full tune's backward also computes every weight's gradient: another forward's worth of
# FLOPs. The counted LoRA step is 1.93x its forward (i-medium-400m: 448 vs 232 GFLOP a
# sample, bench/count_arch.py), a full one about 2.9x: 1.5x the LoRA step.
FULL_TUNE_FLOPS_FACTOR = 1.5
# For a GPU not in the table: an assumed mid-range card.
UNKNOWN_GPU_TFLOPS = 100
# Without autocast (mixed_precision = "no") the GPU runs TF32 tensor cores at best: half the bf16 rate.
FP32_GPU_FACTOR = 0.5
# Measured: IF-I-M's fp32 LoRA step at batch 4, 64px (1.79 TFLOP, counted) took 13.4 s on the
# benchmark machine's 2 idle x86-64 cores with AVX-512 (issue 20's measurement, torch 2.13):
# 67 GFLOP/s a core. Scaled by this machine's cores: a rough figure for another CPU (a core
# without AVX-512 is about half as fast). Rates under load are in bench/RESULTS.md.
CPU_GFLOPS_PER_CORE = 67.0
# mixed_precision bf16 on a CPU: autocast runs bf16 kernels (AVX512-BF16 where present),
# about as fast as fp32 on the benchmark machine (its measured bf16 step over its fp32 step).
CPU_BF16_FACTOR = 1.0
# Embed cache: T5-XXL's encoder over a 77-token prompt (arch_counts.json). On a GPU at the
# share of peak the guide's rate implies: 9-10 prompts/s on an A6000 (155 TFLOP/s) is about
# 4.5% of it (one prompt at a time, the tokenizer and the writes between). On a CPU, T5 is all
# matrix products: bench_embed.py's 8.46 prompts/s for one T5-XXL-width layer (30 GFLOP a
# prompt) is 1.9x the UNet step's rate per core on the same machine.
EMBED_GPU_EFFICIENCY = 0.045
CPU_EMBED_FACTOR = 1.9


@dataclass
class TimeEstimate:
    """Seconds per optimizer step and for the run, and how they were reached."""

    step_s: float
    total_s: float
    steps: int
    embed_s: float | None
    rate_tflops: float  # the effective rate assumed
    basis: str  # how the rate was reached, for the notes

    def to_dict(self) -> dict:
        return {"step_s": round(self.step_s, 3), "total_s": round(self.total_s, 1), "steps": self.steps,
                "embed_s": None if self.embed_s is None else round(self.embed_s, 1),
                "rate_tflops": round(self.rate_tflops, 3), "basis": self.basis}

    def line(self) -> str:
        """"about N s a step, H h for max_train_steps"."""
        text = f"about {duration(self.step_s)} a step"
        if self.steps:
            text += f", {duration(self.total_s)} for {self.steps:,} steps"
        if self.embed_s is not None:
            text += f"; embed cache {duration(self.embed_s)}"
        return text


def duration(seconds: float) -> str:
    """A short human duration: 0.08 s, 4.2 s, 12 s, 7 min, 3.2 h, 5 days."""
    if seconds < 0.01:
        return "under 0.01 s"
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def gpu_peak_tflops(name: str) -> float | None:
    """The card's dense bf16 peak from the table, or None when it is not there."""
    for key in sorted(GPU_BF16_TFLOPS, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, re.I):
            return float(GPU_BF16_TFLOPS[key])
    return None


def step_flops(flavour: str, batch: int, resolution: int, checkpointing: bool, method: str = "lora") -> float:
    """FLOPs of one optimizer step's forward and backward (counted; scaled by pixels and batch)."""
    a = archdata.arch(flavour)
    per_sample = a["train_flops_per_sample_checkpointing" if checkpointing else "train_flops_per_sample"]
    full = FULL_TUNE_FLOPS_FACTOR if method == "full" else 1
    return per_sample * batch * (resolution / a["resolution"]) ** 2 * full


def device_rate(device: Device | None, weight_dtype: str) -> tuple[float, str]:
    """The effective FLOP/s assumed for training on this device, and a phrase saying how."""
    if device is not None and device.is_gpu:
        peak = gpu_peak_tflops(device.name)
        known = peak is not None
        peak = peak or UNKNOWN_GPU_TFLOPS
        rate = peak * 1e12 * GPU_EFFICIENCY * (FP32_GPU_FACTOR if weight_dtype == "fp32" else 1.0)
        basis = (f"{device.name}: {peak:.0f} TFLOP/s bf16 peak" if known else
                 f"{device.name} is not in floydtui's table: assumed {peak:.0f} TFLOP/s bf16 peak") + \
            f" x {GPU_EFFICIENCY:.0%} efficiency"
        return rate, basis
    cores = os.cpu_count() or 1
    rate = CPU_GFLOPS_PER_CORE * 1e9 * cores * (CPU_BF16_FACTOR if weight_dtype != "fp32" else 1.0)
    return rate, (f"this CPU: {cores} cores x {CPU_GFLOPS_PER_CORE:.0f} GFLOP/s "
                  "(a LoRA step's rate measured on an AVX-512 core)")


def estimate_time(flavour: str, *, batch: int, resolution: int, checkpointing: bool, accumulation: int = 1,
                  steps: int, weight_dtype: str = "bf16", device: Device | None, captions: int | None = None,
                  text_encoder_placement: str = "gpu", method: str = "lora") -> TimeEstimate:
    """Seconds per optimizer step (batch x accumulation samples), for `steps`, and the embed cache."""
    rate, basis = device_rate(device, weight_dtype)
    step_s = step_flops(flavour, batch * accumulation, resolution, checkpointing, method) / rate
    if device is not None and device.is_gpu:
        step_s += GPU_STEP_OVERHEAD_S * accumulation
    embed_s = None
    if captions is not None:
        per_prompt = archdata.arch_counts()["t5_xxl_flops_per_prompt"]
        if flavour in archdata.arch_counts()["builtin"]:
            per_prompt *= 0.0001  # the tiny T5 is about 1/10,000 of T5-XXL's work
        on_gpu = device is not None and device.is_gpu
        embed_rate = rate / GPU_EFFICIENCY * EMBED_GPU_EFFICIENCY if on_gpu else rate * CPU_EMBED_FACTOR
        if text_encoder_placement == "stream" and on_gpu:
            embed_rate /= 4  # each block's weights cross PCIe for every batch: the guide's "slower"
        embed_s = captions * per_prompt / embed_rate
    return TimeEstimate(step_s, step_s * steps, steps, embed_s, rate / 1e12, basis)
