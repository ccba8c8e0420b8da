"""Memory of one LoRA training step of the real flavours' UNets, measured on the CPU (issue 20).

Each flavour's UNet is built from its diffusers config in the package
(floydtui/config/if_configs/, random weights: values change neither memory nor time) and
trained through floydtui's own functions: setup_trainable, make_optimizer, stage1_inputs or
Stage2Inputs, diffusion_loss, with floydtui's defaults (the six attention projections,
optimizer adamw_bf16) unless a row says otherwise.

How the peak is measured: torch.profiler(profile_memory=True) records every allocation and
free of the c10 CPU allocator during one step (the inputs, the forward, the backward, the
clipping, the optimizer step), including the kernels' own temporaries; their running sum's
maximum is the step's dynamic peak. Added to it: the bytes alive when the step starts (the
parameters, and the optimizer states that an unprofiled first step created), counted from
the tensors. That is what torch.cuda.max_memory_allocated reports on a GPU, so the
estimator's "allocated" figure is fitted to it; the CUDA context and the caching allocator's
reserve are added on top as documented constants (floydtui/hardware/estimate.py).

By category: parameters (frozen + trainable bytes), gradients (the trainable fp32 bytes, all
alive by the end of backward), optimizer (AdamW's states), activations = peak - the three.

Precision: "fp32" trains with fp32 weights and no autocast; "bf16" is floydtui's
mixed_precision = "bf16": bf16 frozen weights, fp32 LoRA weights, torch.autocast(bf16) on the
CPU (this CPU has AVX512-BF16). CPU autocast's op lists are close to, not the same as, CUDA's.

The largest UNets do not fit this shared 24 GiB machine (a process must stay under 8 GiB):
IF-I-XL (4.3B, 17 GiB in fp32) is never built here (its activations are derived by the
estimator from IF-I-M and IF-I-L, the same layout at other widths); IF-II-L in bf16 at batch 1
with checkpointing is the plan's last row, where the time budget allows. Rows are written to
bench/results/memory.json as they finish, so a run cut short keeps what it measured;
`--budget-s` stops starting new rows after that long, `--resume` keeps the rows already there.
Each row is one profiled step (the profiler costs about a fifth more time); the first step of
a (flavour, precision, rank) group also creates the optimizer's states, counted as alive from
its start.

Run: nohup .venv/bin/python bench/bench_memory.py > /tmp/bench_memory.log 2>&1 &
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from common import cpu_name

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "memory.json"
MAX_RSS_GIB = 8.0  # the shared machine's per-process limit for memory benchmarks

# (flavour, precision, rank): [(batch, resolution, checkpointing), ...], most important first.
PLAN: list[tuple[str, str, int, list[tuple[int, int, bool]]]] = [
    ("i-medium-400m", "fp32", 32, [(1, 64, False), (2, 64, False), (1, 64, True), (2, 64, True)]),
    ("i-medium-400m", "bf16", 32, [(1, 64, False)]),
    ("i-large-900m", "fp32", 32, [(1, 64, False)]),
    ("ii-medium-450m", "fp32", 32, [(1, 256, False)]),
    ("i-medium-400m", "bf16", 32, [(1, 64, True)]),
    ("i-large-900m", "fp32", 32, [(1, 64, True)]),
    ("ii-medium-450m", "fp32", 32, [(1, 256, True)]),
    ("i-medium-400m", "fp32", 8, [(1, 128, False)]),
    ("ii-large-1.2b", "bf16", 32, [(1, 256, True)]),
]


def machine() -> dict:
    import platform

    import torch

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def build_unet(flavour: str, dtype, device: str = "cpu"):
    """The flavour's UNet from the package's config, random weights, on the device."""
    import torch
    from diffusers import UNet2DConditionModel

    from floydtui.hardware.archdata import unet_config

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config(flavour))
    unet = unet.to(dtype=dtype).to_empty(device=device)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0.0, 0.02)  # initialising each layer its own way takes minutes and changes nothing measured
        for b in unet.buffers():
            b.zero_()
    unet.requires_grad_(False)
    return unet


def schedulers(flavour: str):
    from diffusers import DDPMScheduler

    from floydtui.hardware.archdata import config_dir

    folder = config_dir(flavour)
    noise = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    noising = (DDPMScheduler.from_pretrained(folder, subfolder="image_noising_scheduler")
               if (folder / "image_noising_scheduler").is_dir() else None)
    return noise, noising


def live_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        st = t.untyped_storage()
        if st.data_ptr() not in seen:
            seen.add(st.data_ptr())
            total += st.nbytes()
    return total


def rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def peak_rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return 0.0


class Group:
    """One UNet with its adapters and optimizer: the rows of one (flavour, precision, rank)."""

    def __init__(self, flavour: str, precision: str, rank: int, device: str = "cpu") -> None:
        import torch

        from floydtui.config.flavours import FLAVOURS
        from floydtui.config.schema import TRAINING_FIELDS
        from floydtui.train.inputs import Stage2Inputs, stage1_inputs
        from floydtui.train.lora import setup_trainable
        from floydtui.train.optim import make_optimizer

        self.flavour, self.precision, self.rank, self.device = flavour, precision, rank, device
        self.stage = FLAVOURS[flavour].stage
        self.dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        self.training = {f.key: f.default for f in TRAINING_FIELDS} | {"lora_rank": rank, "lora_alpha": rank}
        started = time.perf_counter()
        self.unet = build_unet(flavour, self.dtype, device)
        self.params = setup_trainable(self.unet, self.training)
        self.optimizer = make_optimizer(self.params, self.training)
        self.noise, noising = schedulers(flavour)
        self.make_inputs = stage1_inputs if self.stage == 1 else Stage2Inputs(noising)
        self.unet.train()
        self.build_s = time.perf_counter() - started
        self.warm = False

    def step(self, batch: int, resolution: int):
        """One training step as the trainer takes it (trainer.py's loop, one micro-batch); returns the loss tensor."""
        import torch

        from floydtui.train.trainer import diffusion_loss

        gen = torch.Generator().manual_seed(0)
        x0 = (torch.rand(batch, 3, resolution, resolution, generator=gen) * 2 - 1).to(self.device)
        inputs = self.make_inputs(x0, self.noise, gen)
        cond = torch.randn(batch, 77, 4096, generator=gen).to(self.device, self.dtype)  # what the embed cache supplies
        with torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            pred = self.unet(inputs.sample.to(self.dtype), inputs.timesteps, encoder_hidden_states=cond,
                             class_labels=inputs.class_labels).sample
            loss = diffusion_loss(pred, inputs, self.noise.alphas_cumprod, 0.0)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def measure_gpu(self, batch: int, resolution: int, checkpointing: bool) -> dict:
        """torch.cuda.max_memory_allocated over one step (after a first step made the optimizer's states)."""
        import torch

        (self.unet.enable_gradient_checkpointing if checkpointing else self.unet.disable_gradient_checkpointing)()
        if not self.warm:
            self.step(batch, resolution)
            self.warm = True
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        self.step(batch, resolution)
        torch.cuda.synchronize()
        return {"flavour": self.flavour, "precision": self.precision, "lora_rank": self.rank, "batch": batch,
                "resolution": resolution, "gradient_checkpointing": checkpointing,
                "max_memory_allocated": torch.cuda.max_memory_allocated(),
                "max_memory_reserved": torch.cuda.max_memory_reserved(),
                "step_s": round(time.perf_counter() - started, 3), "gpu": torch.cuda.get_device_name()}

    def measure(self, batch: int, resolution: int, checkpointing: bool) -> dict:
        """One profiled step on the CPU: its peak of live bytes, by category (see the module's docstring)."""
        from torch.profiler import ProfilerActivity, profile

        if checkpointing:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()
        gc.collect()
        params = list(self.unet.parameters())
        params_bytes = live_bytes(params) + live_bytes(list(self.unet.buffers()))
        gradient_bytes = sum(p.numel() * p.element_size() for p in self.params)
        started = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            self.step(batch, resolution)
        step_s = time.perf_counter() - started
        events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
        running = dynamic_peak = 0
        for _, nbytes in events:
            running += nbytes
            dynamic_peak = max(dynamic_peak, running)
        # The first step of a group creates the optimizer's states at its very end, when the
        # activations are gone: counting them as alive from the start is the steady state.
        states = [v for s in self.optimizer.state.values() for v in s.values() if hasattr(v, "untyped_storage")]
        optimizer_bytes = live_bytes(states)
        if not self.warm:
            dynamic_peak = max(0, dynamic_peak - optimizer_bytes) if running >= dynamic_peak else dynamic_peak
            self.warm = True
        peak = params_bytes + optimizer_bytes + dynamic_peak
        return {
            "flavour": self.flavour, "stage": self.stage, "precision": self.precision, "lora_rank": self.rank,
            "optimizer": self.training["optimizer"], "batch": batch, "resolution": resolution,
            "gradient_checkpointing": checkpointing,
            "unet_params": sum(p.numel() for p in params), "trainable_params": sum(p.numel() for p in self.params),
            "peak_bytes": peak, "params_bytes": params_bytes, "gradient_bytes": gradient_bytes,
            "optimizer_bytes": optimizer_bytes, "activation_bytes": peak - params_bytes - optimizer_bytes - gradient_bytes,
            "dynamic_peak_bytes": dynamic_peak, "step_s_profiled": round(step_s, 2), "build_s": round(self.build_s, 1),
            "process_peak_rss_gib": round(peak_rss_gib(), 2),
        }


def save(rows: list[dict], info: dict) -> None:
    from floydtui.fsutil import atomic_write_text

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")


def projected_gib(rows: list[dict], flavour: str, precision: str, batch: int, resolution: int, ckpt: bool) -> float:
    """A cautious guess of a row's process size, to skip what would not fit: the weights, and
    the largest activations per sample and pixel this run has measured for the stage so far."""
    from floydtui.config.flavours import FLAVOURS
    from floydtui.hardware.archdata import unet_params

    params = unet_params(flavour)
    weights = params * (4 if precision == "fp32" else 2)
    stage = FLAVOURS[flavour].stage
    per = [r["activation_bytes"] / r["batch"] / r["resolution"] ** 2 / r["unet_params"] ** 0.5
           for r in rows if r["stage"] == stage and (r["gradient_checkpointing"] or not ckpt)]
    activations = max(per, default=0.0) * batch * resolution ** 2 * params ** 0.5
    return (weights + activations) / 2**30 * 1.2 + 0.7  # + the libraries' own resident memory


def report() -> list[str]:
    """bench/results/memory.md: the measured rows beside the estimate (and the GPU's, when measured)."""
    from floydtui.hardware import calibration as cal
    from floydtui.hardware.archdata import arch, arch_counts
    from floydtui.hardware.estimate import (
        ACTIVATION_BYTES_PER_ELEMENT, BF16_ACTIVATION_FACTOR, Settings, allocated_bytes, estimate_settings, lora_params)

    data = json.loads(RESULTS.read_text())
    m = data["machine"]
    gpu_file = RESULTS.with_name("memory_gpu.json")
    gpu = {(r["flavour"], r["precision"], r["lora_rank"], r["batch"], r["resolution"], r["gradient_checkpointing"]):
           r for r in (json.loads(gpu_file.read_text())["rows"] if gpu_file.is_file() else [])}
    gib = 2 ** 30
    lines = [
        "## Memory of a real-size LoRA step (bench/bench_memory.py)", "",
        f"{m['date']}; {m['cpu']}, {m['cores']} logical CPUs, {m['torch_threads']} torch threads, Python {m['python']}, "
        f"torch {m['torch']}. The machine was shared with other agents' work (load average 6-9 on 2 cores), so the "
        f"step times are 5-10x an idle machine's; total wall time {sum(m.get('runs_wall_s', [])) // 60} min.", "",
        "Each flavour's UNet built from its config (floydtui/config/if_configs/, random weights), one LoRA step "
        "(floydtui defaults: rank 32 on the six attention projections, optimizer adamw_bf16) through floydtui's "
        "setup_trainable, make_optimizer, stage1_inputs / Stage2Inputs and diffusion_loss. Peak: the running sum of "
        "torch.profiler(profile_memory=True)'s allocations and frees during the step, plus the parameters and "
        "optimizer states alive at its start (= what torch.cuda.max_memory_allocated reports on a GPU). Activations = "
        "peak - parameters - gradients - optimizer states. fp32: fp32 weights, no autocast; bf16: bf16 frozen weights, "
        "fp32 LoRA, CPU autocast (AVX512-BF16), floydtui's mixed_precision = \"bf16\". Estimate: "
        "floydtui.hardware.estimate.allocated_bytes for the same settings (no CUDA context or allocator reserve).", "",
        "| setting | measured peak | params | grads | optimizer | activations | estimate | error "
        "| GPU max_memory_allocated | step (CPU, profiled) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in cal.measured_rows(RESULTS):
        r = row.row
        key = (r["flavour"], r["precision"], r["lora_rank"], r["batch"], r["resolution"], r["gradient_checkpointing"])
        g = gpu.get(key)
        lines.append(f"| {row.label} | {r['peak_bytes'] / gib:.2f} GiB | {r['params_bytes'] / gib:.2f} | "
                     f"{r['gradient_bytes'] / 2**20:.0f} MiB | {r['optimizer_bytes'] / 2**20:.0f} MiB | "
                     f"{r['activation_bytes'] / gib:.2f} | {row.estimated_bytes() / gib:.2f} GiB | {row.error():+.1%} | "
                     + (f"{g['max_memory_allocated'] / gib:.2f} GiB" if g else "no GPU") + f" | {r['step_s_profiled']:.0f} s |")
    fitted = cal.fit_activation_constants(cal.measured_rows(RESULTS))
    gpu_fit = [m for m in cal.measured_rows(gpu_file) if m.row["set"] == "fit"] if gpu_file.is_file() else []
    lines += [
        "", "Fitted to these CPU rows: activation bytes per feature element (archdata.feature_elements: "
        "channels x pixels over the ResNet and attention blocks), fp32, by (stage, gradient checkpointing): "
        + ", ".join(f"{k}: {v:.2f}" for k, v in sorted(fitted.items()))
        + "; bf16 over fp32 by checkpointing (CPU autocast): " + ", ".join(
            f"{k}: {v:.3f}" for k, v in cal.fit_bf16_factor(cal.measured_rows(RESULTS)).items())
        + ". The estimator (floydtui/hardware/estimate.py) is fitted to the GPU's rows instead (bench/results/"
        "gpu.md" + (", fitted there: " + ", ".join(f"{k}: {v:.2f}" for k, v in sorted(
            cal.fit_activation_constants(gpu_fit).items())) if gpu_fit else "") + "): "
        + ", ".join(f"{k}: {v}" for k, v in sorted(ACTIVATION_BYTES_PER_ELEMENT.items()))
        + f", bf16 {BF16_ACTIVATION_FACTOR}. The CPU's kernels and autocast keep less than CUDA's, which is why "
        "the errors above are mostly positive: the estimate is for a GPU.",
        "", "Not measured here: IF-I-XL (17 GiB of fp32 weights, over the 8 GiB a process may use on this "
        "machine); bench_gpu.py measured it on a GPU (the GPU column, and bench/results/gpu.md).",
        "", "Counted FLOPs of a LoRA step per sample at the native size (bench/count_arch.py, FlopCounterMode on the "
        "meta device; checkpointing adds the recomputed forward):", "",
        "| flavour | UNet parameters | LoRA r32 | feature elements | GFLOP / sample | with checkpointing |",
        "| --- | ---: | ---: | ---: | ---: | ---: |"]
    counts = arch_counts()
    for name in [*counts["flavours"], *counts["builtin"]]:
        a = arch(name)
        lora = lora_params(name, 32, tuple(counts["default_targets"]))
        lines.append(f"| {name} | {a['unet_params']:,} | {lora:,} | {a['feature_elements'] / 1e6:.1f}M | "
                     f"{a['train_flops_per_sample'] / 1e9:,.0f} | {a['train_flops_per_sample_checkpointing'] / 1e9:,.0f} |")
    issue = [("fp32 b4 64px, checkpointing off", 3.28, False), ("fp32 b4 64px, checkpointing on", 2.55, True)]

    def issue_estimate(ckpt: bool) -> float:
        settings = Settings(flavour="i-medium-400m", weight_dtype="fp32", gradient_checkpointing=ckpt)
        return sum(allocated_bytes(settings).values()) / gib

    lines += ["", "Issue 20's own measurement of IF-I-M (same method, idle machine), against the estimate: "
              + "; ".join(f"{label}: measured {peak:.2f} GiB, estimated {issue_estimate(ckpt):.2f} GiB"
                          for label, peak, ckpt in issue) + "."]
    lines += ["", f"T5-XXL's encoder: {counts['t5_xxl_flops_per_prompt'] / 1e9:.0f} GFLOP a 77-token prompt.", "",
              "Published figures, cross-checked (floydtui/hardware/calibration.py has each one's reading):", "",
              "| figure | published | kind | estimate (peak phase) | UNet step (train phase) | holds |",
              "| --- | ---: | --- | ---: | ---: | --- |"]
    for p in cal.all_points():
        est = estimate_settings(p.settings)
        lines.append(f"| {p.name} | {p.published_mib / 1024:.0f} GiB | {p.kind} | {est.peak_mib / 1024:.1f} GiB "
                     f"({est.peak_phase}) | {est.phases['train'] / 1024:.1f} GiB | {'yes' if p.holds() else 'NO'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-s", type=float, default=25 * 60, help="start no new row after this long")
    parser.add_argument("--only", default="", help="only this flavour")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in the results file")
    parser.add_argument("--report", action="store_true", help="only write bench/results/memory.md from the results")
    args = parser.parse_args()
    if args.report:
        from common import publish

        publish(RESULTS.with_name("memory.md"), report())
        return
    import torch

    torch.manual_seed(0)
    info = machine()
    before = json.loads(RESULTS.read_text()) if args.resume and RESULTS.is_file() else {"rows": [], "machine": {}}
    rows: list[dict] = before["rows"]
    previous_runs = before["machine"].get("runs_wall_s", [])
    done = {(r["flavour"], r["precision"], r["lora_rank"], r["batch"], r["resolution"], r["gradient_checkpointing"])
            for r in rows}
    started = time.perf_counter()
    for flavour, precision, rank, settings in PLAN:
        if args.only and flavour != args.only:
            continue
        todo = []
        for batch, resolution, ckpt in settings:
            if (flavour, precision, rank, batch, resolution, ckpt) in done:
                continue
            need = projected_gib(rows, flavour, precision, batch, resolution, ckpt)
            if need > MAX_RSS_GIB:
                print(f"skip {flavour} {precision} b{batch} {resolution}px ckpt={ckpt}: about {need:.1f} GiB", flush=True)
                continue
            todo.append((batch, resolution, ckpt))
        if not todo or time.perf_counter() - started > args.budget_s:
            continue
        group = Group(flavour, precision, rank)
        for batch, resolution, ckpt in todo:
            if time.perf_counter() - started > args.budget_s:
                print("budget spent: stopping", flush=True)
                break
            row = group.measure(batch, resolution, ckpt)
            rows.append(row)
            save(rows, info)
            print(f"{flavour} {precision} r{rank} b{batch} {resolution}px ckpt={ckpt}: peak "
                  f"{row['peak_bytes'] / 2**30:.2f} GiB (activations {row['activation_bytes'] / 2**30:.2f}), "
                  f"{row['step_s_profiled']} s a step, RSS {rss_gib():.1f} GiB", flush=True)
        del group
        gc.collect()
    info["runs_wall_s"] = previous_runs + [round(time.perf_counter() - started)]
    save(rows, info)
    from common import publish

    publish(RESULTS.with_name("memory.md"), report())


if __name__ == "__main__":
    main()
