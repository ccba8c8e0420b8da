"""GPU benchmark (issue 4); writes bench/results/gpu.md. Skips, and says so, without CUDA.

1. LoRA training memory and speed: UNets of the i-medium-400m and i-xlarge-4.3b sizes built
   from config with random weights (IF's layout: four levels with widths c, 2c, 3c, 4c,
   cross-attention in the lower three and the middle, three resnet blocks a level, T5-XXL
   (4096) text input; c = 192 gives 372M parameters, c = 704 gives 4.30B), LoRA rank 32 on
   IF's six attention projections, batch 4, 64px, bf16 weights, pure-bf16 optimizer states,
   through the trainer's own functions (setup_trainable, make_optimizer, stage1_inputs,
   diffusion_loss). Peak VRAM (torch.cuda.max_memory_allocated) and samples/s, with and
   without gradient checkpointing. The guide's figure to beat: 22-24G for a rank-32 batch-4
   LoRA; the goal: i-medium-400m under 8 GiB.
2. The embed cache on a T5-XXL-encoder-sized model (24 layers, d_model 4096, 64 heads,
   d_ff 10240; 4.76B parameters) with random weights in bf16: prompts/s and peak VRAM with
   the encoder on the GPU and streamed from CPU memory (accelerate's cpu_offload), through
   floydtui.train.sampling.encode_prompts. The guide's figure: 9-10 embeds/s on an
   A6000; the goal: above half the GPU's bf16 peak (the achieved TFLOP/s are reported).

3. The memory benchmark's settings on the GPU (issue 20): every (flavour, precision, rank, batch,
   resolution, checkpointing) of bench_memory.PLAN, plus IF-I-XL (which the CPU machine cannot
   hold), through the same functions (bench_memory.Group), recording torch.cuda.max_memory_allocated
   (what the estimator's allocated figure is fitted to) and max_memory_reserved, in
   bench/results/memory_gpu.json; `bench_memory.py --report` puts them in the table beside the
   CPU's measurement and the estimate.

Run: .venv/bin/python bench/bench_gpu.py [--quick] [--memory-only]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import publish

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "gpu.md"
UNET_WIDTH = {"i-medium-400m": 192, "i-xlarge-4.3b": 704}
T5_XXL = dict(d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24, vocab_size=32128,
              feed_forward_proj="gated-gelu", relative_attention_num_buckets=32, relative_attention_max_distance=128)
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, from the vendors' data sheets.
BF16_PEAK = {"H200": 989, "H100": 989, "A100": 312, "A6000": 155, "L40S": 362, "4090": 165, "A10": 125}


def if_unet_config(c: int) -> dict:
    """An IF stage I UNet's config at width c (the real models' layout, not their published widths)."""
    return dict(
        sample_size=64, in_channels=3, out_channels=6, layers_per_block=3, block_out_channels=[c, 2 * c, 3 * c, 4 * c],
        down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D",
                          "SimpleCrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                        "ResnetUpsampleBlock2D"],
        attention_head_dim=64, cross_attention_dim=4 * c, encoder_hid_dim=4096, addition_embed_type="text",
        addition_embed_type_num_heads=64, cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift",
        act_fn="gelu")


def training_run(width: int, device, *, steps: int, checkpointing: bool, batch: int = 4, rank: int = 32) -> dict:
    """Peak memory and samples/s of LoRA steps through the trainer's functions."""
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from floydtui.config.schema import TRAINING_FIELDS
    from floydtui.train.lora import setup_trainable
    from floydtui.train.optim import make_optimizer
    from floydtui.train.trainer import diffusion_loss, stage1_inputs

    training = {f.key: f.default for f in TRAINING_FIELDS} | {"lora_rank": rank, "lora_alpha": rank,
                                                              "optimizer": "adamw_bf16"}
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):
        unet = UNet2DConditionModel(**if_unet_config(width)).to(dtype)
    unet.requires_grad_(False)
    params_total = sum(p.numel() for p in unet.parameters())
    if checkpointing:
        unet.enable_gradient_checkpointing()
    params = setup_trainable(unet, training)
    optimizer = make_optimizer(params, training)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range")
    gen = torch.Generator().manual_seed(0)
    cond = torch.randn(batch, 77, 4096, device=device, dtype=dtype)  # what the embed cache supplies
    unet.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        x0 = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
        inputs = stage1_inputs(x0, scheduler, gen)
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            pred = unet(inputs.sample.to(dtype), inputs.timesteps, encoder_hidden_states=cond).sample
            loss = diffusion_loss(pred, inputs, scheduler.alphas_cumprod, 0.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter())
    warm = min(3, steps - 2)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    del unet, optimizer, params
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"params": params_total, "peak_gib": peak / 2**30,
            "samples_per_s": (len(times) - 1 - warm) * batch / (times[-1] - times[warm])}


def embed_run(device, *, placement: str, prompts: int, batch: int, layers: int = 24) -> dict:
    """Prompts/s and peak memory of encode_prompts on a T5-XXL-sized encoder with random weights."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    from floydtui.train.sampling import encode_prompts
    from floydtui.train.tiny import ensure_builtin
    from bench_embed import prompts as make_prompts

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(ensure_builtin("builtin:tiny-if-i"), subfolder="tokenizer")
    config = T5Config(**{**T5_XXL, "num_layers": layers})
    with torch.device(device):  # random init on the GPU: seconds instead of minutes on the CPU
        encoder = T5EncoderModel(config).to(dtype).eval()
    params = sum(p.numel() for p in encoder.parameters())
    if placement == "stream":
        from accelerate import cpu_offload

        encoder.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        cpu_offload(encoder, execution_device=device)
    texts = make_prompts(prompts)
    encode_prompts(tokenizer, encoder, texts[:batch], device, clean_caption=True)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        out, _ = encode_prompts(tokenizer, encoder, texts[i:i + batch], device, clean_caption=True)
        out.cpu()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    matmul_params = params - config.vocab_size * config.d_model  # the embedding is a lookup, not a product
    rate = len(texts) / seconds
    del encoder
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"params": params, "prompts_per_s": rate, "peak_gib": peak / 2**30,
            "tflops": rate * 77 * 2 * matmul_params / 1e12}


GPU_EXTRA_PLAN = [("i-xlarge-4.3b", "bf16", 32, [(1, 64, False), (4, 64, False), (4, 64, True)])]


def memory_rows() -> None:
    """bench_memory.PLAN's settings (and IF-I-XL's) on the GPU: max_memory_allocated per step."""
    import gc
    import json

    import torch

    from bench_memory import PLAN, Group
    from floydtui.fsutil import atomic_write_text

    out = REPO / "bench" / "results" / "memory_gpu.json"
    rows = []
    for flavour, precision, rank, settings in PLAN + GPU_EXTRA_PLAN:
        group = Group(flavour, precision, rank, device="cuda")
        for batch, resolution, ckpt in settings:
            rows.append(group.measure_gpu(batch, resolution, ckpt))
            atomic_write_text(out, json.dumps({"rows": rows}, indent=1) + "\n")
            print(rows[-1], flush=True)
        del group
        gc.collect()
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps and prompts")
    parser.add_argument("--memory-only", action="store_true", help="only the memory benchmark's settings")
    args = parser.parse_args()
    import torch

    from bench_embed import machine

    if not torch.cuda.is_available():
        publish(RESULTS, ["## GPU (bench/bench_gpu.py)", "", machine() + ".", "",
                          "Skipped: no CUDA device on this machine. Run `bash bench/run.sh gpu` on a GPU box to fill "
                          "this in."])
        return
    memory_rows()
    if args.memory_only:
        return
    device = torch.device("cuda", 0)
    name = torch.cuda.get_device_name(device)
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    peak_tflops = next((v for k, v in BF16_PEAK.items() if k in name), None)
    steps = 8 if args.quick else 20
    rows = []
    for flavour, width in UNET_WIDTH.items():
        for checkpointing in (False, True):
            r = training_run(width, device, steps=steps, checkpointing=checkpointing)
            rows.append(f"| {flavour} ({r['params'] / 1e6:,.0f}M) | {'on' if checkpointing else 'off'} | "
                        f"{r['peak_gib']:.2f} GiB | {r['samples_per_s']:.1f} |")
            print(rows[-1], flush=True)
    embeds = []
    n = 64 if args.quick else 256
    for placement, batch in (("gpu", 16), ("gpu", 64), ("stream", 16)):
        r = embed_run(device, placement=placement, prompts=n if placement == "gpu" else n // 4, batch=batch)
        share = f"{r['tflops'] / peak_tflops:.0%} of {peak_tflops} TFLOP/s" if peak_tflops else "peak unknown"
        embeds.append(f"| {placement} | {batch} | {r['prompts_per_s']:.1f} | {r['tflops']:.0f} TFLOP/s ({share}) | "
                      f"{r['peak_gib']:.2f} GiB |")
        print(embeds[-1], flush=True)
    lines = [
        "## GPU (bench/bench_gpu.py)", "", machine() + f"; {name}, {total:.0f} GiB.", "",
        "LoRA rank 32 (IF's six attention projections), batch 4, 64px, bf16 weights, pure-bf16 AdamW states, "
        "random-weight UNets of the flavours' sizes in IF's layout (see the script). The guide: 22-24G for a "
        "rank-32 batch-4 LoRA; goal: i-medium-400m under 8 GiB.", "",
        "| UNet | gradient checkpointing | peak VRAM | samples/s |", "| --- | --- | --- | --- |", *rows, "",
        "Embed cache on a T5-XXL-encoder-sized model (4.76B parameters, random bf16 weights), through "
        "encode_prompts. The guide: 9-10 embeds/s on an A6000; goal: above half the GPU's bf16 peak.", "",
        "| placement | batch | prompts/s | achieved | peak VRAM |", "| --- | --- | --- | --- | --- |", *embeds,
    ]
    publish(RESULTS, lines)


if __name__ == "__main__":
    main()
