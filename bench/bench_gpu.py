"""The measurements only a GPU can make, as one prepared script for a lent GPU (issues 4, 20).

Run on the GPU box (each section writes its results to OUT/gpu.json as it finishes, so a run
cut short keeps what it measured; --budget-s starts no section after that long):

    python bench/bench_gpu.py --out OUT [--budget-s 480] [--sections doctor,demo,memory,embed,run_real]

then, on any machine, turn the results into bench/results/gpu.md and memory_gpu.json (the
committed results: three runs on a lent H200, 2026-12-04, kept in bench/results/gpu-run*/):

    .venv/bin/python bench/bench_gpu.py --report bench/results/gpu-run1/gpu.json \
        bench/results/gpu-run2/gpu.json bench/results/gpu-run3/gpu.json

On a box without floydtui installed, the packages it needs can travel as wheels and be put on
PYTHONPATH (what the runs above did); `pip install -e .` is the plain way.

Sections:
  doctor    `floydtui doctor --json` on the GPU: what floydtui detects and its verdicts there.
  demo      `floydtui run presets/demo.toml` (the built-in shapes model, fp32) and
            `floydtui generate --run` on CUDA: the product's GPU path end to end (exit codes,
            phases, the pink share of the generated images) with the process's peak from NVML.
  memory    bench_memory.PLAN's settings, IF-I-XL's (which the CPU machine cannot hold) and
            batch-4 bf16 ones, on UNets built from the flavours' configs (random weights),
            through bench_memory.Group (floydtui's setup_trainable, make_optimizer, inputs and
            loss): torch.cuda.max_memory_allocated / max_memory_reserved of a step beside the
            estimator's allocated figure, and samples/s; plus the CUDA context's size (NVML's
            used memory minus what torch reserved), which the estimator adds as a constant.
  embed     T5-XXL's encoder at its real size (the package's text_encoder config: 24 layers,
            d_model 4096, 4.76B parameters) with random bf16 weights, through the embed
            cache's own loop (encode_prompts + TextEmbedCache.save, caption cleaning on):
            prompts/s on the GPU at batch 16 and 64 and streamed from CPU memory (floydtui's
            place_encoder "stream"), the achieved TFLOP/s and peak memory.
  memory_holdout  settings none of the above has (HOLDOUT_PLAN), to test the fit (not in the default list).
  overhead  (not in the default list; not run yet) one IF-I-M bf16 step queued, with the loss read each
            step, and with the trainer's per-step copies: where `floydtui run` loses a quarter.
  run_real  `floydtui run` on a real-size IF-I-M folder (the 372M UNet and the 24-layer T5,
            random weights) in bf16, batch 4: each phase's peak of NVML's used memory beside
            what `floydtui check` estimated for that phase on the same GPU.

`--smoke` runs every section on the CPU with shrunken models, to check the script itself
before spending GPU time on it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import publish

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "gpu.md"
SECTIONS = ("doctor", "demo", "memory", "embed", "run_real")  # and memory_holdout (HOLDOUT_PLAN), overhead
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets.
BF16_PEAK = {"H200": 989, "H100": 989, "A100": 312, "A6000": 155, "L40S": 362, "4090": 165, "A10": 125}
# Beyond bench_memory.PLAN: IF-I-XL, and the batch-4 bf16 settings of the guide's "22-24G" figure.
GPU_EXTRA_PLAN = [
    ("i-xlarge-4.3b", "bf16", 32, [(1, 64, False), (4, 64, False), (4, 64, True)]),
    ("i-medium-400m", "bf16", 32, [(4, 64, False), (4, 64, True)]),
    ("i-large-900m", "bf16", 32, [(4, 64, False), (4, 64, True)]),
    ("ii-medium-450m", "bf16", 32, [(4, 256, False), (4, 256, True)]),
    ("ii-large-1.2b", "bf16", 32, [(4, 256, False), (1, 256, False)]),
]
# Settings none of the above has, measured to test the estimator fitted to the rows above (held out).
HOLDOUT_PLAN = [
    ("i-medium-400m", "bf16", 16, [(8, 64, False), (2, 96, True)]),
    ("i-medium-400m", "bf16", 64, [(2, 64, False)]),
    ("i-large-900m", "fp32", 32, [(4, 64, False)]),
    ("i-large-900m", "bf16", 32, [(8, 64, True)]),
    ("i-xlarge-4.3b", "bf16", 32, [(2, 64, False), (8, 64, True)]),
    ("ii-medium-450m", "fp32", 32, [(2, 256, False)]),
    ("ii-medium-450m", "bf16", 32, [(2, 256, False), (8, 256, True)]),
    ("ii-large-1.2b", "bf16", 32, [(2, 256, True)]),
]
TIMED_STEPS = 4
MIB = 2 ** 20


# ---- the GPU's own counters ------------------------------------------------------------------

def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sync() -> None:
    import torch

    if cuda():
        torch.cuda.synchronize()


def reset_peak() -> None:
    import torch

    if cuda():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peaks() -> tuple[int | None, int | None]:
    import torch

    if not cuda():
        return None, None
    return torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()


def nvml_used_mib() -> int | None:
    """The GPU's used memory as nvidia-smi shows it (every process's), or None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used // MIB
    except Exception:  # no NVML (the CPU smoke run) or no device
        return None


class Poller:
    """Samples NVML's used memory every 20 ms in a thread: (unix time, MiB) pairs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            used = nvml_used_mib()
            if used is None:
                return
            self.samples.append((time.time(), used))
            self._stop.wait(0.02)

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int | None:
        inside = [m for t, m in self.samples if start <= t <= end]
        return max(inside) if inside else None


# ---- results ---------------------------------------------------------------------------------

class Results:
    """OUT/gpu.json, rewritten atomically after every result."""

    def __init__(self, out: Path) -> None:
        self.path = out / "gpu.json"
        self.data: dict = {"sections": {}, "errors": {}}

    def put(self, section: str, value) -> None:
        self.data["sections"][section] = value
        self.save()

    def save(self) -> None:
        from floydtui.fsutil import atomic_write_text

        atomic_write_text(self.path, json.dumps(self.data, indent=1, default=str) + "\n")


def env_for(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "FLOYDTUI_CACHE": str(root / "floydtui-cache"), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def run_cmd(args: list[str], root: Path, timeout: float, log: Path) -> tuple[int, float]:
    """A floydtui command in `root`, its output in `log`; (exit code, seconds). Killed after `timeout`."""
    started = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "floydtui", *args], cwd=root, env=env_for(root), stdout=fh,
                                stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -9
    return code, time.time() - started


def read_events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a cut last line
    return out


def phase_spans(events: list[dict]) -> list[tuple[str, float, float]]:
    """(phase, start, end) from the phase events and run_end."""
    marks = [(e.get("name", e["type"]), e["t"]) for e in events if e["type"] in ("phase", "run_end")]
    return [(name, t, end) for (name, t), (_, end) in zip(marks, marks[1:])]


# ---- smoke mode: shrunken models on the CPU ---------------------------------------------------

def shrink_for_smoke() -> None:
    """Every UNet config and the T5 config at a tiny size, so the CPU runs each section in seconds."""
    import floydtui.hardware.archdata as archdata

    real = archdata.unet_config

    def small(flavour: str) -> dict:
        c = dict(real(flavour))
        c["block_out_channels"] = [64 * (i + 1) for i in range(len(c["block_out_channels"]))]
        c["layers_per_block"] = 1
        c["cross_attention_dim"] = 64
        return c

    archdata.unet_config = small


def t5_config(smoke: bool):
    from transformers import T5Config

    from floydtui.hardware.archdata import config_dir

    data = json.loads((config_dir("i-medium-400m") / "text_encoder" / "config.json").read_text())
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    if smoke:
        data |= {"num_layers": 1, "d_ff": 256, "num_heads": 2, "d_kv": 32}  # the UNet's text input stays 4096 wide
    return T5Config(**data)


def random_t5(smoke: bool, device: str, dtype):
    """T5-XXL's encoder from its config with random weights, made on `device` directly."""
    import torch
    from transformers import T5EncoderModel

    with torch.device("meta"):
        encoder = T5EncoderModel(t5_config(smoke))
    encoder = encoder.to(dtype=dtype).to_empty(device=device)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "layer_norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.05 if "shared" not in name else 1.0)
        for b in encoder.buffers():
            b.zero_()
    encoder.requires_grad_(False).eval()
    return encoder


# ---- sections --------------------------------------------------------------------------------

def section_doctor(res: Results, root: Path, smoke: bool) -> None:
    log = root / "doctor.log"
    code, seconds = run_cmd(["doctor", "--json"], root, 120, log)
    text = log.read_text()
    start = text.find("{")
    data = json.loads(text[start:]) if code == 0 and start >= 0 else {"output": text[-3000:]}
    res.put("doctor", {"exit": code, "seconds": round(seconds, 1), "report": data})


def pink_share(path: Path) -> float:
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return float((np.abs(a - np.array([255, 60, 180])) <= 40).all(axis=-1).mean())


def section_demo(res: Results, root: Path, out: Path, smoke: bool) -> None:
    from PIL import Image

    shutil.copytree(REPO / "presets", root / "presets")
    shutil.copytree(REPO / "examples" / "demo-data", root / "examples" / "demo-data")
    base = nvml_used_mib()
    with Poller() as poll:
        code, seconds = run_cmd(["run", "presets/demo.toml", "--json"], root, 180, root / "demo_run.log")
    events = read_events(root / "output" / "demo" / "events.jsonl")
    end = next((e for e in events if e["type"] == "run_end"), {})
    steps = [e for e in events if e["type"] == "step"]
    result = {
        "exit": code, "seconds": round(seconds, 1), "status": end.get("status"), "error": end.get("error"),
        "device": next((e.get("device") for e in events if e["type"] == "run_start"), None),
        "steps": len(steps), "last_loss": steps[-1]["loss"] if steps else None,
        "samples_per_s": steps[-1].get("samples_per_s") if steps else None,
        "phases": [(n, round(b - a, 2)) for n, a, b in phase_spans(events)],
        "warnings": [e["message"] for e in events if e["type"] == "warning"][:10],
        "nvml_base_mib": base, "nvml_peak_mib": poll.peak(),
        "log_tail": (root / "demo_run.log").read_text()[-6000:] if code else "",
    }
    res.put("demo", result)
    shares = {}
    tiles = []
    for label, args in (("lora", ["--run", "output/demo"]),
                        ("base", ["--base", "builtin:shapes-if-i", "--steps", "20", "--guidance", "4"])):
        dest = root / f"gen-{label}"
        code, seconds = run_cmd(["generate", *args, "--prompt", "a sks circle on a blue background", "--seed", "0",
                                 "--num-images", "4", "--no-preview", "-o", str(dest)], root, 120,
                                root / f"gen_{label}.log")
        images = sorted(dest.glob("*.png")) if dest.is_dir() else []
        shares[label] = {"exit": code, "seconds": round(seconds, 1), "images": len(images),
                         "pink": [round(pink_share(p), 4) for p in images],
                         "log_tail": (root / f"gen_{label}.log").read_text()[-4000:] if code else ""}
        tiles += [Image.open(p).convert("RGB").resize((128, 128), Image.NEAREST) for p in images]
    if tiles:
        grid = Image.new("RGB", (128 * 4, 128 * ((len(tiles) + 3) // 4)))
        for i, tile in enumerate(tiles):
            grid.paste(tile, (128 * (i % 4), 128 * (i // 4)))
        grid.save(out / "demo_generate.png")
    result["generate"] = shares
    res.put("demo", result)


def section_memory(res: Results, smoke: bool, which: str = "fit") -> None:
    import torch

    from bench_memory import PLAN, Group
    from floydtui.hardware.estimate import Settings, allocated_bytes

    device = "cuda" if cuda() else "cpu"
    plan = PLAN + GPU_EXTRA_PLAN if which == "fit" else HOLDOUT_PLAN
    if smoke:
        plan = [("i-medium-400m", "fp32", 32, [(1, 64, False), (2, 64, True)]), ("ii-medium-450m", "fp32", 8, [(1, 64, False)])]
    rows, context = [], []
    for flavour, precision, rank, settings in plan:
        try:
            group = Group(flavour, precision, rank, device=device)
        except Exception as e:  # noqa: BLE001 - a row that cannot be built is reported, not fatal
            rows.append({"flavour": flavour, "precision": precision, "error": f"{type(e).__name__}: {e}"})
            continue
        for batch, resolution, ckpt in settings:
            try:
                (group.unet.enable_gradient_checkpointing if ckpt else group.unet.disable_gradient_checkpointing)()
                group.step(batch, resolution)  # the optimizer's states, and the kernels' first use
                gc.collect()
                if cuda():
                    torch.cuda.empty_cache()  # the reserve measured is this row's, not the cached blocks of the last
                reset_peak()
                started = time.perf_counter()
                group.step(batch, resolution)
                sync()
                first = time.perf_counter() - started
                allocated, reserved = peaks()
                times = []
                for _ in range(TIMED_STEPS - 1):
                    t0 = time.perf_counter()
                    group.step(batch, resolution)
                    sync()
                    times.append(time.perf_counter() - t0)
                step_s = sorted(times + [first])[len(times) // 2]
                estimate = allocated_bytes(Settings(flavour=flavour, lora_rank=rank, batch_size=batch,
                                                    resolution=resolution, gradient_checkpointing=ckpt,
                                                    weight_dtype=precision, optimizer=group.training["optimizer"]))
                used = nvml_used_mib()
                states = [v for st in group.optimizer.state.values() for v in st.values() if hasattr(v, "numel")]
                row = {"set": which, "flavour": flavour, "stage": group.stage, "precision": precision,
                       "optimizer": group.training["optimizer"], "lora_rank": rank, "batch": batch,
                       "params_bytes": sum(t.numel() * t.element_size()
                                           for t in [*group.unet.parameters(), *group.unet.buffers()]),
                       "gradient_bytes": sum(p.numel() * p.element_size() for p in group.params),
                       "optimizer_bytes": sum(t.numel() * t.element_size() for t in states),
                       "resolution": resolution, "gradient_checkpointing": ckpt,
                       "max_memory_allocated": allocated, "max_memory_reserved": reserved,
                       "estimate_allocated": int(sum(estimate.values())),
                       "estimate_parts": {k: int(v) for k, v in estimate.items()},
                       "step_s": round(step_s, 4), "samples_per_s": round(batch / step_s, 2),
                       "gpu": torch.cuda.get_device_name() if cuda() else "cpu (smoke)"}
                if used is not None and cuda():
                    context.append(used - torch.cuda.memory_reserved() // MIB)
                rows.append(row)
                print(json.dumps(row), flush=True)
            except Exception as e:  # noqa: BLE001 - an out-of-memory row is a result too
                rows.append({"flavour": flavour, "precision": precision, "batch": batch, "resolution": resolution,
                             "gradient_checkpointing": ckpt, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                print(rows[-1], flush=True)
            res.put("memory" if which == "fit" else "memory_holdout", {"rows": rows, "cuda_context_mib": context})
        del group
        gc.collect()
        if cuda():
            torch.cuda.empty_cache()


def section_overhead(res: Results, smoke: bool) -> None:
    """Where `floydtui run`'s step loses time beside the bare step (0.28 s against 0.21 s on the H200).

    The same IF-I-M bf16 batch-4 step, 20 times each way: queued back to back with one sync at the
    end (the CPU runs ahead of the GPU), with the loss read (`.item()`, a sync) after every step as
    train_step does, and with that plus the batch built as the trainer builds it (uint8 pixels and
    cached embeds copied from pageable CPU memory each step).
    """
    import numpy as np
    import torch

    from bench_memory import Group

    device = "cuda" if cuda() else "cpu"
    group = Group("i-medium-400m", "bf16" if cuda() else "fp32", 32, device=device)
    n, batch = (3 if smoke else 20), 4
    pixels = np.random.default_rng(0).integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
    embeds = torch.randn(batch, 77, 4096)

    def trainer_like() -> float:
        x0 = (torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()
        cond = embeds.to(device, group.dtype)
        del x0, cond  # the copies and their syncs are what is timed; the step below makes its own
        return group.step(batch, 64).item()

    ways = {"queued": lambda: group.step(batch, 64), "item": lambda: group.step(batch, 64).item(),
            "trainer_like": trainer_like}
    out = {}
    for name, fn in ways.items():
        for _ in range(3):
            fn()
        sync()
        started = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        out[name] = round((time.perf_counter() - started) / n, 4)
        print(name, out[name], flush=True)
        res.put("overhead", {"step_s": out, "setting": f"i-medium-400m {group.precision} r32 b{batch} 64px"})
    del group
    gc.collect()


def section_embed(res: Results, root: Path, smoke: bool) -> None:
    import torch
    from transformers import AutoTokenizer

    from bench_embed import prompts as make_prompts
    from floydtui.train.embed_cache import TextEmbedCache, encode_into, place_encoder
    from floydtui.train.sampling import encode_prompts, preprocess
    from floydtui.train.tiny import ensure_builtin

    device = torch.device("cuda" if cuda() else "cpu")
    dtype = torch.bfloat16 if cuda() else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(ensure_builtin("builtin:tiny-if-i"), subfolder="tokenizer")
    started = time.perf_counter()
    encoder = random_t5(smoke, str(device), dtype)
    build_s = time.perf_counter() - started
    config = encoder.config
    params = sum(p.numel() for p in encoder.parameters())
    matmul_params = params - config.vocab_size * config.d_model  # the embedding is a lookup, not a product
    texts = make_prompts(1024 if not smoke else 32)
    t0 = time.perf_counter()
    preprocess(texts[:256], True)
    clean_s_per_prompt = (time.perf_counter() - t0) / min(256, len(texts))
    runs = []
    peak_tflops = next((v for k, v in BF16_PEAK.items() if k in torch.cuda.get_device_name()), None) if cuda() else None

    def measure(label: str, batch: int, n: int, *, writes: str) -> None:
        """writes: "none" (encoding alone), "inline" (each batch's entries written before the next batch
        is encoded: the loop before 2026-12-04) or "overlapped" (embed_cache.encode_into, the product's loop)."""
        cache = TextEmbedCache(root / f"cache-{label}-{batch}-{writes}", "bench", dtype)
        encode_prompts(tokenizer, encoder, texts[:batch], device, True)  # warm-up: kernels, the allocator
        reset_peak()
        encode_s = save_s = 0.0
        start = time.perf_counter()
        if writes == "overlapped":
            encode_into(cache, texts[:n], tokenizer, encoder, device, batch)
        else:
            for i in range(0, n, batch):
                chunk = texts[i:i + batch]
                t = time.perf_counter()
                embeds, tokens = encode_prompts(tokenizer, encoder, chunk, device, True)
                embeds = embeds.cpu()
                encode_s += time.perf_counter() - t
                if writes == "inline":
                    t = time.perf_counter()
                    for prompt, e, k in zip(chunk, embeds, tokens):
                        cache.save(prompt, e, k)
                    save_s += time.perf_counter() - t
        seconds = time.perf_counter() - start
        allocated, _ = peaks()
        if writes != "none":
            assert all(cache.path(t).is_file() for t in texts[:n]), "an entry was not written"
        runs.append({"placement": label, "batch": batch, "prompts": n, "writes": writes,
                     "prompts_per_s": round(n / seconds, 2), "seconds": round(seconds, 3),
                     "encode_s": round(encode_s, 3) if writes != "overlapped" else None,
                     "save_s": round(save_s, 3) if writes == "inline" else None,
                     "tflops": round(n / (encode_s or seconds) * 77 * 2 * matmul_params / 1e12, 1),
                     "peak_allocated_gib": round(allocated / 2**30, 2) if allocated else None})
        print(json.dumps(runs[-1]), flush=True)
        res.put("embed", {"params": params, "build_s": round(build_s, 1),
                          "clean_caption_ms": round(clean_s_per_prompt * 1e3, 3),
                          "bf16_peak_tflops": peak_tflops, "runs": runs})

    n = 32 if smoke else 512
    for batch in (16, 64):
        for writes in ("none", "inline", "overlapped"):
            measure("gpu", batch, n, writes=writes)
    if cuda():
        encoder.to("cpu")
        torch.cuda.empty_cache()
        place_encoder(encoder, "stream")
        for batch in (16, 64, 256):
            measure("stream", batch, batch * 4, writes="overlapped")
    del encoder
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()


def build_real_folder(dest: Path, smoke: bool) -> float:
    """bench_run_real's IF-I-M folder with the whole 24-layer T5 (bf16), made on the GPU; seconds taken."""
    import torch

    from bench_run_real import build_model

    started = time.perf_counter()
    device = "cuda" if cuda() else "cpu"
    build_model(dest, random_t5(smoke, device, torch.bfloat16 if cuda() else torch.float32), device)
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()
    return time.perf_counter() - started


def section_run_real(res: Results, root: Path, smoke: bool) -> None:
    from bench_run_real import write_preset
    from bench_train import make_images

    model = root / "IF-I-M-random"
    build_s = build_real_folder(model, smoke)
    make_images(root / "images", count=16)
    steps = 3 if smoke else 30
    out: dict = {"build_s": round(build_s, 1), "runs": {}}
    for mp in (("bf16", "no") if cuda() else ("no",)):
        preset = write_preset(root, model, steps, 4, mixed_precision=mp, inference_steps=20, tag=f"-{mp}")
        code, _ = run_cmd(["check", str(preset), "--json"], root, 300, root / f"check-{mp}.log")
        text = (root / f"check-{mp}.log").read_text()
        try:
            report = json.loads(text[text.find("{"):])
            memory = next(s for s in report["sections"] if s["title"] == "memory")["data"]
        except (ValueError, StopIteration, KeyError):
            memory = {"output": text[-2000:]}
        base = nvml_used_mib()
        with Poller() as poll:
            code, seconds = run_cmd(["run", str(preset), "--json"], root, 300, root / f"run-{mp}.log")
        events = read_events(root / f"out-{mp}" / "events.jsonl")
        end = next((e for e in events if e["type"] == "run_end"), {})
        step_events = [e for e in events if e["type"] == "step"]
        phases = [{"phase": n, "seconds": round(b - a, 2),
                   "nvml_peak_mib": (poll.peak(a, b) - base) if poll.peak(a, b) is not None and base is not None
                   else None} for n, a, b in phase_spans(events)]
        embed_rates = [e["rate"] for e in events if e["type"] == "progress" and e.get("phase") == "embed_cache"]
        out["runs"][mp] = {
            "exit": code, "seconds": round(seconds, 1), "status": end.get("status"), "error": end.get("error"),
            "steps": len(step_events), "samples_per_s": step_events[-1].get("samples_per_s") if step_events else None,
            "embed_rate": embed_rates[-1] if embed_rates else None, "nvml_base_mib": base,
            "nvml_whole_run_peak_mib": (poll.peak() - base) if poll.peak() is not None and base is not None else None,
            "phases": phases, "check_memory": memory,
            "log_tail": (root / f"run-{mp}.log").read_text()[-6000:] if code else "",
        }
        res.put("run_real", out)


# ---- the report, on any machine --------------------------------------------------------------

def gpu_rows(sections: dict) -> list[dict]:
    """The memory rows of a run (fit and held-out), as calibration.MeasuredRow reads them."""
    out = []
    for name in ("memory", "memory_holdout"):
        for r in sections.get(name, {}).get("rows", []):
            if not r.get("max_memory_allocated") or "params_bytes" not in r:
                continue  # the smoke run's, an error, or a run from before the tensors were counted live
            counted = r["params_bytes"] + r["gradient_bytes"] + r["optimizer_bytes"]
            row = {k: v for k, v in r.items() if k not in ("estimate_allocated", "estimate_parts")}
            row |= {"set": r.get("set", "fit"), "peak_bytes": r["max_memory_allocated"],
                    "activation_bytes": r["max_memory_allocated"] - counted}
            out.append(row)
    return out


def report(paths: list[Path]) -> None:
    """bench/results/gpu.md and memory_gpu.json from one or more gpu.json (a later one's sections win)."""
    from floydtui.fsutil import atomic_write_text
    from floydtui.hardware import calibration as cal
    from floydtui.hardware.estimate import ALLOCATOR_RESERVE, CUDA_CONTEXT_MIB

    data: dict = {"sections": {}, "errors": {}}
    dates = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        data["sections"] |= d["sections"]
        data["errors"] |= d.get("errors", {})
        data["machine"] = d.get("machine", {})
        dates.append(data["machine"].get("date", "?") + " (" + ", ".join(d["sections"]) + ")")
    s = data["sections"]
    info = data["machine"]
    gib = 2 ** 30
    lines = ["## GPU (bench/bench_gpu.py)", "",
             f"{info.get('gpu', '?')}, {info.get('gpu_gib', 0):.0f} GiB, driver "
             f"{info.get('driver', '?')}; torch {info.get('torch', '?')}, CUDA {info.get('cuda', '?')}, "
             f"{info.get('cpus', '?')} CPUs. `python bench/bench_gpu.py` on a lent GPU box, each run on a fresh "
             f"machine of that kind: " + "; ".join(dates) + ". A later run's section replaces an earlier one's. "
             "Random weights throughout: values change neither memory nor time."]
    rows = gpu_rows(s)
    if rows:
        atomic_write_text(REPO / "bench" / "results" / "memory_gpu.json",
                          json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
        ctx = s.get("memory", {}).get("cuda_context_mib") or []
        lines += ["", "### LoRA step memory and speed, real-config UNets (bench_memory.Group on CUDA)", "",
                  "One step after a first one made the optimizer's states (the allocator's cache emptied between "
                  "them); floydtui's defaults (the six attention projections, optimizer adamw_bf16). bf16 = "
                  "floydtui's mixed_precision = \"bf16\" (bf16 frozen weights, fp32 LoRA, CUDA autocast). The "
                  "estimator's activation constants are fitted to the \"fit\" rows "
                  "(calibration.fit_activation_constants, fit_bf16_factor); the \"held out\" rows are settings "
                  "none of those has, measured to test it. Estimate: floydtui.hardware.estimate.allocated_bytes as "
                  "it is now, the figure `floydtui check` adds the allocator's reserve "
                  f"({ALLOCATOR_RESERVE:.0%}) and the CUDA context ({CUDA_CONTEXT_MIB} MiB) to.", "",
                  "| rows | setting | max_memory_allocated | estimate | error | max_memory_reserved "
                  "| reserve over allocated | step | samples/s |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        measured = [cal.MeasuredRow(r) for r in rows]
        for m in measured:
            r = m.row
            lines.append(f"| {'fit' if r['set'] == 'fit' else 'held out'} | {m.label} | {r['peak_bytes'] / gib:.2f} GiB | "
                         f"{m.estimated_bytes() / gib:.2f} GiB | {m.error():+.1%} | "
                         f"{r['max_memory_reserved'] / gib:.2f} GiB | "
                         f"{r['max_memory_reserved'] / r['peak_bytes'] - 1:+.1%} | {r['step_s'] * 1000:.0f} ms | "
                         f"{r['samples_per_s']:.1f} |")
        for name in ("memory", "memory_holdout"):
            for r in s.get(name, {}).get("rows", []):
                if "error" in r:
                    lines.append(f"| | {r['flavour']} {r['precision']} b{r.get('batch', '?')} "
                                 f"{r.get('resolution', '?')}px: {r['error']} | | | | | | | |")
        gaps = [r["max_memory_reserved"] / r["peak_bytes"] - 1 for r in rows]
        summary = []
        for label, subset in (("fit", [m for m in measured if m.row["set"] == "fit"]),
                              ("held out", [m for m in measured if m.row["set"] != "fit"])):
            errors = [m.error() for m in subset]
            if errors:
                summary.append(f"{label}: {min(errors):+.1%} to {max(errors):+.1%} over {len(errors)} settings "
                               f"(mean {sum(errors) / len(errors):+.1%})")
        lines += ["", "Estimate against max_memory_allocated: " + "; ".join(summary) + ". The allocator's reserve "
                  f"over allocated: {min(gaps):+.1%} to {max(gaps):+.1%} (mean {sum(gaps) / len(gaps):+.1%}; the "
                  f"estimator adds {ALLOCATOR_RESERVE:.0%})."
                  + (f" CUDA context in the benchmark's process, which by then had run every kind of step "
                     f"(NVML's used memory minus torch's reserved): {min(ctx)}-{max(ctx)} MiB (the estimator adds "
                     f"{CUDA_CONTEXT_MIB}; the trainer's own processes below)." if ctx else "")]
    if "embed" in s:
        e = s["embed"]
        peak = e.get("bf16_peak_tflops")
        lines += ["", "### Text-embed cache, T5-XXL's encoder at its real size", "",
                  f"{e['params'] / 1e9:.2f}B parameters from the package's text_encoder config, random bf16 weights; "
                  f"the embed cache's own loop (encode_prompts with caption cleaning, then TextEmbedCache.save: "
                  f"hash, safetensors, atomic rename) over distinct prompts of 8-40 words. Caption cleaning alone: "
                  f"{e['clean_caption_ms']:.2f} ms a prompt on the CPU. The guide: 9-10 embeds/s on an A6000.", "",
                  "| placement | batch | prompts | cache writes | prompts/s | encoding | writing | T5's TFLOP/s "
                  "| peak allocated |", "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in e["runs"]:
            share = f" ({r['tflops'] / peak:.0%} of {peak})" if peak else ""
            writes = r.get("writes", "inline" if r.get("save") else "none")
            encoding = "-" if r.get("encode_s") is None else f"{r['encode_s']:.1f} s"
            writing = "-" if r.get("save_s") is None else f"{r['save_s']:.1f} s"
            lines.append(f"| {r['placement']} | {r['batch']} | {r['prompts']} | {writes} | {r['prompts_per_s']:.1f} | "
                         f"{encoding} | {writing} | {r['tflops']:.0f}{share} | {r['peak_allocated_gib']} GiB |")
    if "demo" in s:
        d = s["demo"]
        lines += ["", "### The demo on CUDA (`floydtui run presets/demo.toml`, then `floydtui generate`)", "",
                  f"Exit {d['exit']}, run_end {d['status']}, device {d['device']}, {d['steps']} steps in "
                  f"{d['seconds']:.0f} s (process start to exit), last loss {d['last_loss']}, "
                  f"{d['samples_per_s']} samples/s. Phases: "
                  + ", ".join(f"{n} {t:.1f} s" for n, t in d["phases"])
                  + (f". GPU memory used at its peak (NVML, all processes): {d['nvml_peak_mib']} MiB, "
                     f"{d['nvml_peak_mib'] - d['nvml_base_mib']} MiB over the {d['nvml_base_mib']} MiB before it started"
                     if d.get("nvml_peak_mib") is not None else "") + "."]
        for label, g in (d.get("generate") or {}).items():
            pink = ", ".join(f"{p:.1%}" for p in g["pink"])
            lines.append(f"- `generate` ({label}, 'a sks circle on a blue background', seeds 0-3): exit {g['exit']}, "
                         f"{g['images']} images in {g['seconds']:.0f} s, pink share {pink or '-'}.")
        if d.get("warnings"):
            lines.append("- Warnings: " + "; ".join(d["warnings"]))
    if "run_real" in s:
        rr = s["run_real"]
        lines += ["", "### `floydtui run` on a real-size IF-I-M (372M UNet, 24-layer T5-XXL, random weights), batch 4, "
                      "64px, 30 steps", "",
                  f"The folder took {rr['build_s']:.0f} s to build. Peak GPU memory per phase: NVML's used memory "
                  "over what was in use before the process started (so it includes the process's CUDA context and "
                  "what its allocator keeps cached from an earlier phase), beside `floydtui check`'s estimate "
                  "for the same preset on this GPU, made there by the estimator of that time.", ""]
        from floydtui.config.preset import preset_from_dict
        from floydtui.hardware.estimate import estimate

        for mp, r in rr["runs"].items():
            phases = r.get("check_memory", {}).get("estimate", {}).get("phases", {})
            now = estimate(preset_from_dict({  # the same preset, estimated by the estimator as it is now
                "model": {"model_flavour": "i-medium-400m"},
                "training": {"train_batch_size": 4, "mixed_precision": mp, "max_train_steps": 30},
                "validation": {"validation_resolution": "64"},
                "datasets": [{"id": "photos", "instance_data_dir": "."},
                             {"id": "text-embeds", "dataset_type": "text_embeds", "default": True}]})).phases
            lines += [f"mixed_precision = \"{mp}\": exit {r['exit']}, run_end {r['status']}, {r['steps']} steps, "
                      f"{r['samples_per_s']} samples/s, embed cache {r['embed_rate']} prompts/s, {r['seconds']:.0f} s "
                      "in all." + (f" Error: {r['error']}" if r.get("error") else ""), "",
                      "| phase | time | measured peak | check's estimate there | the estimate now |",
                      "| --- | ---: | ---: | ---: | ---: |"]
            names = {"embed_cache": "embed_cache", "train": "train", "validate": "validation"}
            for p in r["phases"]:
                est, est_now = phases.get(names.get(p["phase"], "")), now.get(names.get(p["phase"], ""))
                peak = p["nvml_peak_mib"]
                lines.append(f"| {p['phase']} | {p['seconds']:.1f} s | {'-' if peak is None else peak} MiB | "
                             f"{'-' if est is None else f'{est} MiB'} | {'-' if est_now is None else f'{est_now} MiB'} |")
            lines.append("")
    if "overhead" in s:
        o = s["overhead"]
        lines += ["", f"### A step's overhead ({o['setting']}, 20 steps each way)", "",
                  ", ".join(f"{k}: {v * 1000:.0f} ms a step" for k, v in o["step_s"].items())
                  + " (queued: one sync at the end; item: the loss read after each step, as train_step does; "
                  "trainer_like: that plus the batch's copies from pageable memory)."]
    if "doctor" in s:
        rep = s["doctor"].get("report", {})
        lines += ["", f"`floydtui doctor --json` there: exit {s['doctor']['exit']}; devices: "
                      + json.dumps(rep.get("devices", rep.get("output", "?")))[:600]]
    if data.get("errors"):
        lines += ["", "Sections that failed: " + "; ".join(f"{k}: {v}" for k, v in data["errors"].items())]
    publish(RESULTS, lines)


def machine_info() -> dict:
    import platform
    from datetime import datetime, timezone

    import torch

    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cpus": os.cpu_count(), "python": platform.python_version()}
    if cuda():
        info |= {"gpu": torch.cuda.get_device_name(), "gpu_gib": torch.cuda.get_device_properties(0).total_memory / 2**30}
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu-run",
                        help="folder for gpu.json and the generated images (then --report is run on it)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--budget-s", type=float, default=480, help="start no section after this long")
    parser.add_argument("--smoke", action="store_true", help="the CPU, shrunken models: checks the script")
    parser.add_argument("--report", type=Path, nargs="+", help="write bench/results/gpu.md from gpu.json files")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    if args.smoke:
        shrink_for_smoke()
    elif not cuda():
        print("no CUDA device: nothing measured, bench/results/gpu.md kept (--smoke checks the script on the CPU)")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    res = Results(args.out)
    res.data["machine"] = machine_info()
    res.save()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sections.split(","):
            if time.time() - started > args.budget_s:
                res.data["errors"][name] = "skipped: the time budget was spent"
                res.save()
                continue
            root = Path(tmp) / name
            root.mkdir()
            t0 = time.time()
            print(f"== {name}", flush=True)
            try:
                if name == "doctor":
                    section_doctor(res, root, args.smoke)
                elif name == "demo":
                    section_demo(res, root, args.out, args.smoke)
                elif name in ("memory", "memory_holdout"):
                    section_memory(res, args.smoke, "fit" if name == "memory" else "holdout")
                elif name == "embed":
                    section_embed(res, root, args.smoke)
                elif name == "overhead":
                    section_overhead(res, args.smoke)
                elif name == "run_real":
                    section_run_real(res, root, args.smoke)
            except Exception as e:  # noqa: BLE001 - one section's failure must not lose the others
                import traceback

                res.data["errors"][name] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2500:]}"
                traceback.print_exc()
            res.data.setdefault("section_s", {})[name] = round(time.time() - t0, 1)
            res.save()
            print(f"== {name} done in {time.time() - t0:.0f} s", flush=True)
            shutil.rmtree(root, ignore_errors=True)
    if not args.smoke:
        try:
            report([res.path])
        except Exception:  # noqa: BLE001 - gpu.json holds everything; --report can be rerun on it
            import traceback

            traceback.print_exc()


if __name__ == "__main__":
    main()
