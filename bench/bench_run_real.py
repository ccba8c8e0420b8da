"""`floydtui run` end to end on a real-size IF-I-M (issue 20); writes bench/results/run_real.md.

A local model folder holding IF-I-M's UNet at its real size (built from
floydtui/config/if_configs/IF-I-M-v1.0, random weights, 372M parameters), its scheduler, and a
T5 stand-in of T5-XXL's width (d_model 4096, d_ff 10240, 64 heads) with 1 layer instead of 24
and the built-in model's tokenizer, saved with IFPipeline.save_pretrained so it loads as a
downloaded folder does. `floydtui run` trains a LoRA (floydtui's defaults: rank 32 on the six
attention projections) for a few steps on generated images, fp32 on the CPU, with the final
save and load check. Reported: each phase's time (from events.jsonl's phase events) and the
process's peak RSS (os.wait4), beside what `floydtui check` estimated for the same preset.

Expensive: about 7 GiB of RSS and minutes of CPU. Not a test. Run:
  .venv/bin/python bench/bench_run_real.py [--steps 2] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import publish

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "run_real.md"


def build_model(dest: Path, encoder=None, device: str = "cpu") -> None:
    """The real-size IF-I-M folder, random weights: its UNet (fp32, made on `device`) and `encoder`, by
    default a 1-layer T5-XXL-width stand-in (bench_gpu.py passes the whole 24-layer T5)."""
    import torch
    from diffusers import DDPMScheduler, IFPipeline
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    from bench_memory import build_unet
    from floydtui.hardware.archdata import config_dir
    from floydtui.train.tiny import ensure_builtin

    torch.manual_seed(0)
    folder = config_dir("i-medium-400m")
    tokenizer = AutoTokenizer.from_pretrained(ensure_builtin("builtin:tiny-if-i"), subfolder="tokenizer")
    if encoder is None:
        t5 = json.loads((folder / "text_encoder" / "config.json").read_text())
        config = T5Config(**{k: v for k, v in t5.items() if not k.startswith("_")} | {
            "num_layers": 1, "vocab_size": len(tokenizer)})
        encoder = T5EncoderModel(config).eval()
    unet = build_unet("i-medium-400m", torch.float32, device)
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)  # near-zero noise predictions: random weights, not chaos
    scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    IFPipeline(tokenizer=tokenizer, text_encoder=encoder, unet=unet, scheduler=scheduler, safety_checker=None,
               feature_extractor=None, watermarker=None, requires_safety_checker=False).save_pretrained(dest)


def write_preset(root: Path, model: Path, steps: int, batch: int, *, mixed_precision: str = "no",
                 inference_steps: int = 2, tag: str = "") -> Path:
    """The preset, its output in out{tag} and its cache in cache{tag} under `root`."""
    path = root / f"real{tag}.toml"
    path.write_text(f"""
[model]
model_flavour = "i-medium-400m"
pretrained_model_name_or_path = "{model}"
[training]
train_batch_size = {batch}
max_train_steps = {steps}
mixed_precision = "{mixed_precision}"
checkpointing_steps = 0
[validation]
validation_resolution = "64"
validation_steps = 0
validation_num_inference_steps = {inference_steps}
[output]
output_dir = "out{tag}"
[[datasets]]
id = "photos"
instance_data_dir = "images"
caption_strategy = "textfile"
[[datasets]]
id = "text-embeds"
dataset_type = "text_embeds"
default = true
cache_dir = "cache{tag}"
""")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    from bench_embed import machine
    from bench_train import make_images

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(REPO), "FLOYDTUI_CACHE": str(root / "floydtui-cache")}
        started = time.time()
        build_model(root / "IF-I-M-random")
        build_s = time.time() - started
        make_images(root / "images", count=16)
        preset = write_preset(root, root / "IF-I-M-random", args.steps, args.batch)
        check = subprocess.run([sys.executable, "-m", "floydtui", "check", str(preset), "--json"], cwd=root, env=env,
                               capture_output=True, text=True)
        memory = next(s for s in json.loads(check.stdout)["sections"] if s["title"] == "memory")["data"]
        started = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "floydtui", "run", str(preset), "--json"], cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if proc.poll() is None:
                proc.kill()
        wall = time.time() - started
        events = [json.loads(line) for line in (root / "out" / "events.jsonl").read_text().splitlines() if line]
    code = os.waitstatus_to_exitcode(status)
    marks = [(e.get("name", e["type"]), e["t"]) for e in events if e["type"] in ("phase", "run_end")]
    phases = [(name, end_t - t) for (name, t), (_, end_t) in zip(marks, marks[1:])]
    end = next((e for e in events if e["type"] == "run_end"), {})
    steps = [e for e in events if e["type"] == "step"]
    train_start = next(t for name, t in marks if name == "train")
    step_s = [b - a for a, b in zip([train_start] + [e["t"] for e in steps], [e["t"] for e in steps])]
    load = os.getloadavg()[1]
    lines = [
        "## `floydtui run` on a real-size IF-I-M (bench/bench_run_real.py)", "",
        machine() + ".",
        f"IF-I-M's UNet at its real size (372M parameters, random weights, fp32) with a 1-layer T5-XXL-width "
        f"stand-in; LoRA rank 32 on the six attention projections, batch {args.batch}, 64px, {args.steps} steps, "
        f"fp32 on the CPU, 16 generated images; building the folder took {build_s:.0f} s. Exit code {code}, "
        f"run_end {end.get('status', '?')}; steps took " + ", ".join(f"{x:.0f} s" for x in step_s)
        + f" (load average {load:.1f} on {os.cpu_count()} cores: other agents' work).", "",
        "| phase | time |", "| --- | ---: |",
        *[f"| {name} | {seconds:.1f} s |" for name, seconds in phases],
        f"| whole process | {wall:.1f} s |", "",
        f"Peak RSS of the run: {usage.ru_maxrss / 2**20:.2f} GiB (ru_maxrss). `floydtui check` on this machine "
        f"(no GPU) estimated the training phase at {memory['estimate']['phases']['train'] / 1024:.2f} GiB of GPU "
        f"memory for the same settings (allocated + CUDA context + allocator reserve; the RSS adds the Python, torch "
        f"and the T5 stand-in's weights) and {memory['time']['step_s']:.1f} s a step on this CPU when idle.",
    ]
    publish(RESULTS, lines)


if __name__ == "__main__":
    main()
