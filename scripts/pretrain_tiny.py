"""Pretrain the built-in shapes models (builtin:shapes-if-i, builtin:shapes-if-ii) on the shapes world.

    .venv/bin/python scripts/pretrain_tiny.py --stage 1      # then --stage 2
    nice -n 15 nohup .venv/bin/python scripts/pretrain_tiny.py --stage 1 > pretrain-i.log 2>&1 &

Deterministic: the world, the UNet's initialisation, the noise and the timesteps all come from
fixed seeds, so a rerun with the same torch version and thread count (--threads) gives the same
weights. Checkpoints go to --work every --save-every steps and a rerun resumes from the last one,
so a killed run loses little. At the end the EMA weights are saved in fp16 as a pipeline folder in
floydtui/train/weights/shapes-if-{i,ii} (the package ships it) and scored: stage I with the
colour analyser of floydtui.train.shapes on 8 prompts, stage II with PSNR against the world's
256px ground truth, next to bicubic upscaling.

What it trains (see docs/builtin-models.md for the measured run times on 2 CPU cores):
- the T5 encoder and tokenizer are the tiny ones every builtin model shares (random, frozen);
  prompts are encoded once, as floydtui's embed cache encodes them;
- both stages: epsilon loss on the first three output channels, weighted by 1/SNR (at most 20,
  then from step --cap-from at most 200) where the noise dominates (the implied x0's loss: plain
  epsilon loss teaches the high-noise steps, which set colours and layout, too slowly); the
  learned-variance channels taught to say -1 (the fixed_small variance) so `learned_range`
  sampling works too; 10% of captions dropped to the empty prompt for classifier-free guidance;
- stage I: 64px images;
- stage II: as IFSuperResolutionPipeline feeds it (the 64px image upscaled bilinearly, noised by
  the image_noising_scheduler at a noise level that is also the class label), but on random
  --crop px windows of the 256px image (the UNet is convolutional; its attention sees fewer
  tokens), which is what makes it affordable on a CPU (--crop 256 trains on the whole image: only there
  can the UNet learn where it is, which the pipeline's align_corners=True upscale needs, as it moves the
  content by up to 1.5 px towards the borders); with --on-policy, part of each batch is
  noised by the model's own sampling steps instead, with the target that leads back to the true
  image (sampling otherwise keeps its own earlier errors); with --end-to-end (whole images), each step
  samples the batch as the pipeline does, from pure noise, with gradients through every sampling step,
  and trains on the final image's error (what the tests score) plus each step's x0 loss; with
  --grad-below T, only the chain's steps at t < T carry gradients and a loss (the earlier ones run
  without, and up to 10 steps keep their activations rather than recompute them: with T = 350 a step
  takes a third of the time), since the last steps lose most even from a perfect state; --levels-at
  puts every condition at one noise level (250: the pipeline's default, what users upscale at).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from floydtui.train import shapes, tiny  # noqa: E402
from floydtui.config.flavours import TEXT_MAX_LENGTH  # noqa: E402
from floydtui.train.sampling import encode_prompts, preprocess  # noqa: E402
from floydtui.train.inputs import low_res, upscale_like_pipeline  # noqa: E402

SEED = 20260101
EVAL_PROMPTS = [  # 8 prompts of the world: every shape, every colour as shape and as background
    ("red", "circle", "blue"), ("green", "square", "yellow"), ("blue", "triangle", "white"),
    ("yellow", "diamond", "purple"), ("white", "star", "black"), ("orange", "circle", "green"),
    ("purple", "square", "orange"), ("black", "triangle", "red"),
]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", type=int, choices=(1, 2), required=True)
    p.add_argument("--steps", type=int, default=500, help="optimizer steps")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--crop", type=int, default=64,
                   help="stage II: training window of the 256px image (256: the whole image, whose borders tell the "
                        "UNet where it is; the pipeline's upscale moves the content by up to 1.5 px towards them)")
    p.add_argument("--low-levels", type=float, default=0.5,
                   help="stage II: the share of the condition's noise levels drawn below 300 (the rest over 0-999)")
    p.add_argument("--levels-at", type=int, default=None, metavar="LEVEL",
                   help="stage II: every condition at this noise level (250: the pipeline's default, what users "
                        "upscale with and the test judges), drawn otherwise as before")
    p.add_argument("--widths", type=lambda v: tuple(int(w) for w in v.split(",")), default=None,
                   help="block_out_channels, e.g. 16,16,32,48,64 (default: the shipped layout's)")
    p.add_argument("--cap-from", type=int, default=200, help="the step from which the loss weight's cap is 200")
    p.add_argument("--focus-from", type=int, default=None,
                   help="from this step on, half of each batch's timesteps are drawn from the noisiest fifth (800-999)")
    p.add_argument("--train-text", action="store_true",
                   help="train the tiny T5 with the UNet (a random T5 barely tells 'a red circle on a blue background' "
                        "from 'a blue circle on a red background'; a trained one does, as T5-XXL does)")
    p.add_argument("--text-from", type=Path, default=None,
                   help="a pipeline folder whose tokenizer and T5 to use, frozen (stage II: stage I's, as IF shares one)")
    p.add_argument("--resume-from", type=Path, default=None,
                   help="start from the EMA UNet (and trained T5) of this state.pt, or the UNet of this pipeline folder "
                        "(a new phase: fresh optimizer and EMA)")
    p.add_argument("--on-policy", type=float, default=0.0,
                   help="stage II: the share of each batch whose noisy input is reached by 1 to --rollout of the "
                        "model's own sampling steps (20, 25 or 50 of them, as IFSuperResolutionPipeline takes them) "
                        "from a forward-noised image, with the epsilon that leads back to the true image as target: "
                        "sampling keeps its own earlier errors unless it has learned to correct them")
    p.add_argument("--rollout", type=int, default=6, help="stage II, --on-policy: the most sampling steps rolled out")
    p.add_argument("--from-noise", action="store_true",
                   help="stage II, --on-policy: a rollout from the schedule's first step starts from pure noise, "
                        "as the pipeline does (without it, from the image noised to that step)")
    p.add_argument("--end-to-end", type=float, default=0.0, metavar="WEIGHT",
                   help="stage II, whole images: each step samples the batch as the pipeline does (20 or 25 DDPM steps "
                        "from pure noise) with gradients through every step, and adds WEIGHT x the final image's "
                        "squared error against the true image to the loss of each step's x0 (the on-policy loss "
                        "of every state the chain visits): what the test scores is the end of the chain")
    p.add_argument("--grad-below", type=int, default=1000, metavar="T",
                   help="stage II, --end-to-end: only the chain's steps at t < T carry gradients and a loss; the "
                        "earlier ones run without (the model's own states, as sampling reaches them; with T = 350 a "
                        "step takes a third of the time): the last steps lose most, even from a perfect state")
    p.add_argument("--stop-at", type=int, default=None, help="end (and save) at this step of the --steps schedule")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--work", type=Path, default=ROOT / "output" / "pretrain")
    p.add_argument("--out", type=Path, default=None, help="default: floydtui/train/weights/shapes-if-{i,ii}")
    args = p.parse_args()
    if args.levels_at is not None and not 0 <= args.levels_at <= 999:
        p.error(f"--levels-at {args.levels_at}: give a noise level from 0 (a clean condition) to 999")
    if not 1 <= args.grad_below <= 1000:
        p.error(f"--grad-below {args.grad_below}: give a timestep from 1 (only the last step, t = 0, trains) to 1000 "
                "(every step trains, the default)")
    return args


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def world_batch(rng: random.Random, n: int, side: int = 256) -> tuple[torch.Tensor, list[str]]:
    """n scenes drawn at `side` px as a [-1, 1] tensor, with their captions."""
    import numpy as np

    scenes = [shapes.random_scene(rng) for _ in range(n)]
    arr = np.stack([np.asarray(shapes.draw(s, side)) for s in scenes])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0, [s.caption for s in scenes]


def all_captions() -> list[str]:
    return [shapes.caption(c, s, b) for c in shapes.COLOURS for s in shapes.SHAPES for b in shapes.COLOURS if b != c]


class EMA:
    """An exponential moving average of the UNet's weights, with the usual warm-up of the decay."""

    def __init__(self, model, decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self, model, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if v.dtype.is_floating_point:
                    self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    self.shadow[k].copy_(v)


def model_name(stage: int) -> str:
    """The package's folder (and model) name of the built-in shapes model of `stage`."""
    return tiny.SHAPES_NAMES["builtin:shapes-if-i" if stage == 1 else "builtin:shapes-if-ii"]


def stage2_batch(x256: torch.Tensor, crop: int, gen: torch.Generator, noising, low_levels: float,
                 at: int | None = None):
    """(target window, its noised upscaled condition, noise levels), as the pipeline builds them, cropped; with
    `at`, every noise level is `at` (the same draws are made, so the rest of the batch is as without it)."""
    n = x256.shape[0]
    up = upscale_like_pipeline(low_res(x256), tuple(x256.shape[-2:]))
    # A share of the levels (`low_levels`, half by default) below 300, the rest uniform over all: users
    # upscale at 250 (the pipeline's default), and a tiny model has little capacity to spare for heavily
    # noised conditions.
    levels = torch.where(torch.rand(n, generator=gen) < 1 - low_levels, torch.randint(0, 1000, (n,), generator=gen),
                         torch.randint(0, 300, (n,), generator=gen))
    if at is not None:
        levels = torch.full_like(levels, at)
    cond = noising.add_noise(up, torch.randn(up.shape, generator=gen), levels)
    ys = torch.randint(0, 256 - crop + 1, (n,), generator=gen)
    xs = torch.randint(0, 256 - crop + 1, (n,), generator=gen)
    corners = list(zip(ys.tolist(), xs.tolist()))

    def window(t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t[i, :, y:y + crop, x:x + crop] for i, (y, x) in enumerate(corners)])

    return window(x256), window(cond), levels


def target_epsilon(scheduler, noisy: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The epsilon whose implied x0 at (noisy, t) is exactly x0."""
    abar = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    return (noisy - abar.sqrt() * x0) / (1 - abar).sqrt()


def ddpm_step(scheduler, model_eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor, prev: torch.Tensor,
              z: torch.Tensor) -> torch.Tensor:
    """DDPMScheduler.step (fixed_small variance, IF-II's thresholding: x0 clamped to [-1, 1]) per sample,
    each at its own t and previous t (prev < 0: the final step), with `z` as the step's noise."""
    ab = scheduler.alphas_cumprod
    a_t = ab[t].view(-1, 1, 1, 1)
    a_prev = torch.where(prev >= 0, ab[prev.clamp(min=0)], torch.ones_like(prev, dtype=ab.dtype)).view(-1, 1, 1, 1)
    alpha = a_t / a_prev
    beta = 1 - alpha
    x0 = ((x - (1 - a_t).sqrt() * model_eps) / a_t.sqrt()).clamp(-1, 1)
    mean = a_prev.sqrt() * beta / (1 - a_t) * x0 + alpha.sqrt() * (1 - a_prev) / (1 - a_t) * x
    var = ((1 - a_prev) / (1 - a_t) * beta).clamp(min=1e-20)
    return mean + torch.where(prev.view(-1, 1, 1, 1) >= 0, var.sqrt() * z, torch.zeros_like(z))


def rollout(unet, scheduler, x0, cond, ctx, levels, noisy, t, gen, share: float, most: int, from_noise: bool):
    """Replace a share of the batch's (t, noisy) with states the model's own sampling reaches: each picked sample
    gets a schedule of 20, 25 or 50 steps (leading spacing, as the pipeline's), a landing step on it, and starts
    1 to `most` steps earlier from the forward-noised image (with `from_noise`, from pure noise where that is the
    schedule's first step, as the pipeline starts); the model then samples its way to the landing step."""
    n = x0.shape[0]
    picked = torch.rand(n, generator=gen) < share
    counts = torch.tensor([20, 25, 50])[torch.randint(0, 3, (n,), generator=gen)]
    ratio = 1000 // counts
    land = torch.randint(0, 10**6, (n,), generator=gen) % counts  # index on the schedule, 0 = the noisiest
    k = torch.minimum(land, 1 + torch.randint(0, most, (n,), generator=gen))  # steps rolled out
    k = torch.where(picked, k, torch.zeros_like(k))
    t_land = (counts - 1 - land) * ratio
    t_start = t_land + k * ratio
    noise = torch.randn(x0.shape, generator=gen)
    x = scheduler.add_noise(x0, noise, t_start)
    if from_noise:  # a rollout from the schedule's first step starts where the pipeline does: from pure noise
        x = torch.where((k == land).view(-1, 1, 1, 1), noise, x)
    was = unet.training
    unet.eval()
    wait = k.max() - k  # a sample with k steps runs the last k of the loop
    with torch.no_grad():
        for r in range(int(k.max())):
            active = r >= wait
            t_now = t_start - (r - wait).clamp(min=0) * ratio
            eps = unet(torch.cat([x, cond], 1), t_now, encoder_hidden_states=ctx, class_labels=levels).sample[:, :3]
            stepped = ddpm_step(scheduler, eps, x, t_now, t_now - ratio, torch.randn(x.shape, generator=gen))
            x = torch.where(active.view(-1, 1, 1, 1), stepped, x)
    unet.train(was)
    t = torch.where(picked, t_land, t)
    noisy = torch.where(picked.view(-1, 1, 1, 1), x, noisy)
    return t, noisy


def sample_chain(unet, scheduler, x, cond, ctx, levels, count: int, gen, visit=None,
                 grad_below: int = 1000) -> torch.Tensor:
    """IFSuperResolutionPipeline's denoising loop at guidance 1 from the noise `x` (DDPM with fixed_small variance
    and IF-II's thresholding, `count` steps with leading spacing, each step's noise drawn from `gen` as the scheduler
    draws it), keeping the graph through every step at t < `grad_below` (the earlier ones run without);
    `visit(t, x, pred)` sees each such step's input and UNet output."""
    ratio = 1000 // count
    steps = [(count - 1 - i) * ratio for i in range(count)]
    held = sum(step_t < grad_below for step_t in steps) * x.shape[0]  # steps x samples with a graph

    def run(inp, t):
        return unet(inp, t, encoder_hidden_states=ctx, class_labels=levels).sample

    for i, step_t in enumerate(steps):
        t = torch.full((x.shape[0],), step_t, dtype=torch.long)
        inp = torch.cat([x, cond], 1)
        if step_t >= grad_below:
            with torch.no_grad():
                pred = run(inp, t)
        else:
            # over 10 steps x samples, recomputed in the backward pass (20 steps' activations at 256 px would hold
            # about 10 GB); fewer fit (3.6 GB) and are kept: 3.9 s a step at T = 350, was 5.4-6.4
            pred = checkpoint(run, inp, t, use_reentrant=False) if held > 10 else run(inp, t)
            if visit is not None:
                visit(t, x, pred)
        z = torch.randn(x.shape, generator=gen) if i < count - 1 else torch.zeros_like(x)  # the last adds none
        x = ddpm_step(scheduler, pred[:, :3], x, t, t - ratio, z)
    return x


def chain_loss(unet, scheduler, x0, cond, ctx, levels, gen, cap: float, final_weight: float, grad_below: int = 1000):
    """Sample x0's upscale as the pipeline does (20 or 25 steps from pure noise) with gradients through every step at
    t < `grad_below`. Returns (loss, final squared error): the mean over those steps of each step's loss (its epsilon
    against the one whose x0 is the true image, weighted by 1/SNR up to `cap`: the loss of its x0; the variance channels
    against -1), plus `final_weight` x the sampled image's squared error against x0."""
    count = (20, 25)[int(torch.randint(0, 2, (1,), generator=gen))]
    per_step = []

    def visit(t, x, pred):
        # weighted by 1/SNR (up to `cap`) down to the last step: the loss of the step's x0. Floored at 1, as for
        # forward-noised states, the last steps' epsilon error would dominate: off the forward process, their
        # target epsilon carries what the chain got wrong, times 1/sqrt(1 - abar) (156 at t = 0)
        per_step.append(step_loss(scheduler, pred, target_epsilon(scheduler, x, x0, t), t, None, cap))

    x = sample_chain(unet, scheduler, torch.randn(x0.shape, generator=gen), cond, ctx, levels, count, gen, visit,
                     grad_below)
    final = ((x - x0) ** 2).mean()
    return torch.stack(per_step).mean() + final_weight * final, final.detach()


def step_loss(scheduler, pred, target, t, floor: float | None, cap: float) -> torch.Tensor:
    """The training loss of a UNet output: its epsilon against `target`, weighted by 1/SNR within [floor, cap]
    (the loss of the implied x0 where the weight is 1/SNR), plus the variance channels taught to say -1."""
    abar = scheduler.alphas_cumprod[t]
    weight = ((1 - abar) / abar).clamp(floor, cap)
    eps_loss = ((pred[:, :3] - target) ** 2).mean(dim=(1, 2, 3))
    return (weight * eps_loss).mean() + 0.1 * F.mse_loss(pred[:, 3:], torch.full_like(pred[:, 3:], -1.0))


def weight_cap(step: int, cap_from: int) -> float:
    """The cap on the 1/SNR loss weight: 20 while the UNet finds its feet, then 200 so the highest-noise
    steps, where sampling starts and colours are decided, are learned too (capped at 20 throughout,
    the x0 a model predicted at t=950 was still noise after 200 steps, and so were its samples)."""
    return 20.0 if step < cap_from else 200.0


def lr_at(step: int, total: int, base: float) -> float:
    warm = 50
    if step < warm:
        return base * (step + 1) / warm
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))


def main() -> int:
    args = parse()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    stage = args.stage
    steps = args.steps
    name = model_name(stage)
    out = args.out or tiny.WEIGHTS_DIR / name
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    from floydtui.train.models import quiet_libraries

    quiet_libraries()
    if args.text_from:
        from transformers import T5EncoderModel, T5TokenizerFast

        tokenizer = T5TokenizerFast.from_pretrained(args.text_from / "tokenizer")
        text_encoder = T5EncoderModel.from_pretrained(args.text_from / "text_encoder", dtype=torch.float32).eval()
    else:
        tokenizer = tiny.build_tokenizer()
        text_encoder = tiny.build_text_encoder(tokenizer)
    captions = all_captions()
    with torch.no_grad():
        embeds, _ = encode_prompts(tokenizer, text_encoder, captions + [""], "cpu", clean_caption=True)
    table = dict(zip(captions + [""], embeds.float()))
    # the same tokens the pipeline's encode_prompt makes, for encoding with gradients when T5 trains
    tokens = tokenizer(preprocess(captions + [""], True), padding="max_length", max_length=TEXT_MAX_LENGTH,
                       truncation=True, add_special_tokens=True, return_tensors="pt")
    index = {c: i for i, c in enumerate(captions + [""])}
    unet = tiny.shapes_unet(stage, args.widths)
    if args.resume_from:
        if args.resume_from.is_dir():  # a pipeline folder (a shipped model): its UNet; T5 via --text-from
            from diffusers import UNet2DConditionModel

            start = {"ema": UNet2DConditionModel.from_pretrained(args.resume_from / "unet", torch_dtype=torch.float32)
                     .state_dict()}
        else:
            start = torch.load(args.resume_from, weights_only=False)
        unet.load_state_dict(start["ema"])
        if "text_ema" in start:  # its T5 trained too: go on from its EMA
            text_encoder.load_state_dict(start["text_ema"])
    log(f"{name}: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M UNet parameters, {steps} steps, "
        f"batch {args.batch}, {args.threads} threads")
    scheduler = tiny.if_scheduler(stage)
    noising = tiny.image_noising_scheduler()
    groups = [{"params": list(unet.parameters())}]
    if args.train_text:
        text_encoder.train().requires_grad_(True)
        groups.append({"params": list(text_encoder.parameters()), "scale": 0.5})
    for g in groups:
        g.setdefault("scale", 1.0)
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = EMA(unet)
    text_ema = EMA(text_encoder) if args.train_text else None
    step = 0
    ckpt = work / "state.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(state["unet"])
        opt.load_state_dict(state["opt"])
        ema.shadow = state["ema"]
        if text_ema is not None:
            text_encoder.load_state_dict(state["text"])
            text_ema.shadow = state["text_ema"]
        step = state["step"]
        log(f"resumed at step {step}")
    unet.train()
    t0, losses, finals = time.time(), [], []
    while step < min(steps, args.stop_at or steps):
        # every step's randomness comes from its own seed: resuming replays exactly
        rng, gen = random.Random(SEED * 7919 + step), torch.Generator().manual_seed(SEED + step)
        x, caps = world_batch(rng, args.batch)
        caps = ["" if rng.random() < 0.1 else c for c in caps]
        if args.train_text:
            rows = torch.tensor([index[c] for c in caps])
            ctx = text_encoder(tokens.input_ids[rows], attention_mask=tokens.attention_mask[rows])[0]
        else:
            ctx = torch.stack([table[c] for c in caps])
        if stage == 1:
            x0, cond, levels = low_res(x), None, None
        else:
            x0, cond, levels = stage2_batch(x, args.crop, gen, noising, args.low_levels, args.levels_at)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (x0.shape[0],), generator=gen)
        if args.focus_from is not None and step >= args.focus_from:
            # Sampling starts from pure noise, where only the caption says what to draw: a uniform draw gives
            # those steps a tenth of the batch, too few for the text pathway to learn the colours in a CPU budget.
            t = torch.where(torch.arange(x0.shape[0]) % 2 == 0, 800 + torch.randint(0, 200, t.shape, generator=gen), t)
        noisy = scheduler.add_noise(x0, noise, t)
        for g in opt.param_groups:
            g["lr"] = g["scale"] * lr_at(step, steps, args.lr)
        if args.end_to_end and cond is not None:
            loss, final = chain_loss(unet, scheduler, x0, cond, ctx, levels, gen, weight_cap(step, args.cap_from),
                                     args.end_to_end, args.grad_below)
            finals.append(final.item())
        else:
            if args.on_policy and cond is not None:
                t, noisy = rollout(unet, scheduler, x0, cond, ctx, levels, noisy, t, gen, args.on_policy,
                                   args.rollout, args.from_noise)
                noise = target_epsilon(scheduler, noisy, x0, t)
            sample = noisy if cond is None else torch.cat([noisy, cond], 1)
            pred = unet(sample, t, encoder_hidden_states=ctx, class_labels=levels).sample
            # Epsilon loss, weighted up where the signal is weak (1/SNR, at most 20: the loss of the implied x0):
            # plain epsilon loss teaches the high-noise steps, which set colours and layout, too slowly.
            loss = step_loss(scheduler, pred, noise, t, 1.0, weight_cap(step, args.cap_from))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        ema.update(unet, step)
        if text_ema is not None:
            text_ema.update(text_encoder, step)
        losses.append(loss.item())
        if step % 20 == 0:
            rate = (time.time() - t0) / len(losses)
            chain = f" final image {psnr_of(sum(finals) / len(finals)):.2f} dB" if finals else ""
            log(f"step {step}/{steps} loss {sum(losses) / len(losses):.4f}{chain} {rate:.2f}s/step")
            losses, finals, t0 = [], [], time.time()
        if step % args.save_every == 0 or step in (steps, args.stop_at):
            tmp = ckpt.with_suffix(".tmp")
            state = {"unet": unet.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow, "step": step}
            if text_ema is not None:
                state.update(text=text_encoder.state_dict(), text_ema=text_ema.shadow)
            torch.save(state, tmp)
            os.replace(tmp, ckpt)
        if step % args.eval_every == 0 and step < steps:
            evaluate(stage, ema_unet(stage, ema, args.widths), tokenizer, ema_text(text_encoder, text_ema),
                     work / f"step-{step}", quick=True)
    final = ema_unet(stage, ema, args.widths)
    text_encoder = ema_text(text_encoder, text_ema)
    save(stage, final, tokenizer, text_encoder, out)
    evaluate(stage, final, tokenizer, text_encoder, work / "final", quick=False)
    return 0


def ema_unet(stage: int, ema: EMA, widths: tuple[int, ...] | None = None):
    unet = tiny.shapes_unet(stage, widths)
    unet.load_state_dict(ema.shadow)
    return unet.eval()


def ema_text(text_encoder, text_ema):
    """The T5 to sample with: its EMA weights where it trains, else itself."""
    import copy

    if text_ema is None:
        return text_encoder
    out = copy.deepcopy(text_encoder)
    out.load_state_dict(text_ema.shadow)
    return out.eval().requires_grad_(False)


def save(stage: int, unet, tokenizer, text_encoder, out: Path) -> None:
    """The pipeline folder, UNet weights in fp16 (they load into float32 models as any fp16 file does)."""
    import json
    import shutil

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # the UNet in fp16 (half the size); T5 stays fp32, so prompts encode exactly as in pretraining
    tiny.save_pipeline(stage, unet.half(), tokenizer, text_encoder, tmp)
    unet.float()
    (tmp / "floydtui-builtin.json").write_text(json.dumps({
        "name": model_name(stage), "note": tiny.SHAPES_NOTE, "seed": SEED, "stage": stage,
        "trained_by": "scripts/pretrain_tiny.py", "command": "scripts/pretrain_tiny.py " + " ".join(sys.argv[1:])},
        indent=2) + "\n")
    for f in tmp.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)  # safetensors writes private files; the package's are ordinary
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    log(f"saved {out} ({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 1e6:.1f} MB)")


def evaluate(stage: int, unet, tokenizer, text_encoder, folder: Path, quick: bool) -> None:
    """Score the model the way the tests do, and keep the images for a look."""
    import numpy as np
    from diffusers import IFPipeline, IFSuperResolutionPipeline
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(tiny.if_scheduler(stage).config, variance_type="fixed_small")
    common = dict(unet=unet, scheduler=sched, tokenizer=tokenizer, text_encoder=text_encoder, safety_checker=None,
                  feature_extractor=None, watermarker=None, requires_safety_checker=False)
    with torch.no_grad():
        if stage == 1:
            pipe = IFPipeline(**common)
            pipe.set_progress_bar_config(disable=True)
            good = 0
            for i, (c, s, b) in enumerate(EVAL_PROMPTS):
                img = pipe(shapes.caption(c, s, b), num_inference_steps=10 if quick else 25, guidance_scale=4.0,
                           generator=torch.Generator().manual_seed(i), output_type="pt").images[0]
                arr = ((img.float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i}-{c}-{s}-{b}.png")
                got = shapes.analyse(arr)
                good += got == (c, b)
                log(f"  {shapes.caption(c, s, b)!r}: centre {got[0]}, border {got[1]}")
            log(f"eval {folder.name}: {good}/8 prompts drawn as asked")
        else:
            pipe = IFSuperResolutionPipeline(image_noising_scheduler=tiny.image_noising_scheduler(), **common)
            pipe.set_progress_bar_config(disable=True)
            rng = random.Random(SEED - 1)
            ours, bicubic = [], []
            for i in range(2 if quick else 6):
                x, caps = world_batch(rng, 1)
                small = low_res(x)
                out = pipe(image=small, prompt=caps[0], num_inference_steps=10 if quick else 25, guidance_scale=1.0,
                           noise_level=250, generator=torch.Generator().manual_seed(i), output_type="pt").images
                out = out.float().clamp(-1, 1)
                bic = F.interpolate(small, (256, 256), mode="bicubic", align_corners=False).clamp(-1, 1)
                ours.append(psnr(out, x))
                bicubic.append(psnr(bic, x))
                row = torch.cat([bic[0], out[0], x[0]], 2)
                arr = ((row / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.png")
            log(f"eval {folder.name}: PSNR model {sum(ours) / len(ours):.2f} dB, "
                f"bicubic {sum(bicubic) / len(bicubic):.2f} dB")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two [-1, 1] images, on the [0, 1] scale."""
    return psnr_of(((a - b) ** 2).mean().item())


def psnr_of(squared_error: float) -> float:
    """PSNR in dB of a mean squared error between [-1, 1] images, on the [0, 1] scale."""
    return 10 * math.log10(1.0 / max(squared_error / 4, 1e-10))


if __name__ == "__main__":
    sys.exit(main())
