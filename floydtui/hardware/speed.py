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

from floydtui.config.flavours import TEXT_ENCODER_PARAMS
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
# the low-resolution levels, group norms and elementwise work between them. Stated: on the
# H200 that bench_gpu.py ran on, no step was long enough for its FLOPs to show (below).
GPU_EFFICIENCY = 0.35
# What a step costs on a GPU beside its FLOPs: thousands of kernel launches (the UNet's forward
# and backward, autocast's casts, peft's adapters, the optimizer's loop over each LoRA tensor)
# and the Python that issues them. Measured on an H200 (bench/results/gpu.md): 0.14-0.41 s a
# step through the trainer's functions for every flavour, batch 1-8, 0.4-55 TFLOP a step, the
# same within noise (a least-squares fit: 0.22 s plus the FLOPs); `floydtui run` itself took
# 0.22 s (fp32) and 0.28 s (bf16) a step of IF-I-M at batch 4. It dominates on fast cards.
GPU_STEP_OVERHEAD_S = 0.2
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
# Embed cache: T5-XXL's encoder over a 77-token prompt (arch_counts.json). On a GPU, floydtui's
# own cache loop (embed_cache.encode_into) was measured on an H200 with T5-XXL at its real size
# (bench/results/gpu.md): encoding alone ran at 28-32% of the bf16 peak (374-431 prompts/s at
# batch 16 and 64); the entries' writes (hash, safetensors, fsync, rename: 2.3-2.5 ms each),
# made by a thread while the next batch encodes, leave 0.7 ms a prompt unhidden (289-333
# prompts/s in all; written in line, 181-198). The guide's SimpleTuner figure is 9-10 prompts/s
# on an A6000. Streamed (accelerate's cpu_offload), every batch moves T5's weights from CPU
# memory: 4.3 GB/s there (2.2-2.7 s a batch: 6.5, 29 and 95 prompts/s at batch 16, 64 and
# 256). On a CPU, T5 is all matrix products: bench_embed.py's 8.46 prompts/s for one
# T5-XXL-width layer (30 GFLOP a prompt) is 1.9x the UNet step's rate per core on the same machine.
EMBED_GPU_EFFICIENCY = 0.28
EMBED_WRITE_S = 0.0007
STREAM_BYTES_PER_S = 4.3e9
T5_BF16_BYTES = TEXT_ENCODER_PARAMS * 2  # T5-XXL's encoder in bf16, as the embed cache runs it on a GPU
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
                  text_encoder_placement: str = "gpu", method: str = "lora",
                  embed_batch_size: int = 16) -> TimeEstimate:
    """Seconds per optimizer step (batch x accumulation samples), for `steps`, and the embed cache."""
    rate, basis = device_rate(device, weight_dtype)
    step_s = step_flops(flavour, batch * accumulation, resolution, checkpointing, method) / rate
    if device is not None and device.is_gpu:
        step_s += GPU_STEP_OVERHEAD_S * accumulation
    embed_s = None
    if captions is not None:
        per_prompt, t5_bytes = archdata.arch_counts()["t5_xxl_flops_per_prompt"], T5_BF16_BYTES
        if flavour in archdata.arch_counts()["builtin"]:
            per_prompt, t5_bytes = per_prompt * 0.0001, t5_bytes * 0.0001  # the tiny T5: 1/10,000 of T5-XXL
        on_gpu = device is not None and device.is_gpu
        if on_gpu:
            peak = (gpu_peak_tflops(device.name) or UNKNOWN_GPU_TFLOPS) * 1e12
            per_prompt_s = per_prompt / (peak * EMBED_GPU_EFFICIENCY) + EMBED_WRITE_S
            if text_encoder_placement == "stream":  # each batch moves every block's weights to the GPU
                per_prompt_s += t5_bytes / STREAM_BYTES_PER_S / embed_batch_size
        else:
            per_prompt_s = per_prompt / (rate * CPU_EMBED_FACTOR)
        embed_s = captions * per_prompt_s
    return TimeEstimate(step_s, step_s * steps, steps, embed_s, rate / 1e12, basis)
