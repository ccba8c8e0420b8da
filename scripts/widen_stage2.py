"""Widen a stage II shapes UNet's full-size level (8 channels as shipped) by a whole factor, keeping what it has learned.

    .venv/bin/python scripts/widen_stage2.py --width 24 --out output/wide24 [--from FOLDER]

Every full-size channel is copied `factor` times (Net2Net): a copy takes the original's incoming weights,
and the layers that read the copies share the original's outgoing weight among them (a random positive
split per weight, summing to the original, so the copies' gradients differ and training can pull them
apart). GroupNorm keeps its statistics where every channel of a group is copied alike, which holds for
every norm but two: the up path's first 256 px resnet and the last 128 px one read a concatenation of 16
hidden channels and a full-size skip, and the copies move the group boundary. Those two norms' per-channel
scale and shift are refitted by least squares, on world images at random timesteps, to what the narrow
UNet's norms output; then the two resnets are fitted (Adam, 1500 steps each) to the narrow ones' outputs
from the narrow UNet's own inputs to them. The width may not equal the 128px level's: that would drop its
first resnet's conv_shortcut. The time embedding's input (sinusoids of block_out_channels[0] / 2 frequencies) keeps
the narrow UNet's frequencies among the wider set, and the new ones start with zero weight.

Writes a pipeline folder (the source's, with the wide UNet in fp16) that `pretrain_tiny.py --resume-from
FOLDER --widths W,16,32,48,64` goes on from, and prints how far the wide UNet's outputs are from the narrow one's.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import pretrain_tiny  # noqa: E402
from floydtui.train import tiny  # noqa: E402

MIXED = ("up_blocks.3.resnets.1.norm1", "up_blocks.4.resnets.0.norm1")  # norms whose groups the copies move


def channel_map(old: int, new: int, factor: int, hidden: int) -> torch.Tensor:
    """For each of `new` channels, the narrow channel it copies: all copied, or `hidden` kept then a copied skip."""
    if new == old * factor:
        return torch.arange(new) // factor
    assert new - hidden == (old - hidden) * factor, (old, new)
    return torch.cat([torch.arange(hidden), hidden + torch.arange(new - hidden) // factor])


def split(weight: torch.Tensor, src: torch.Tensor, dim: int, gen: torch.Generator) -> torch.Tensor:
    """`weight` read along `dim` through `src`, each original weight shared among its copies by a random split."""
    out = weight.index_select(dim, src)
    share = 0.5 + torch.rand(out.shape, generator=gen)  # positive, 0.5-1.5
    totals = torch.zeros_like(weight).index_add_(dim, src, share)  # per original weight: the sum of its copies' shares
    return out * share / totals.index_select(dim, src)


def widen_state(narrow: dict, wide_model, narrow_widths: tuple[int, ...], factor: int, gen: torch.Generator) -> dict:
    """The wide UNet's weights from the narrow one's: full-size channels copied, their readers' weights split."""
    wide = wide_model.state_dict()
    lost = sorted(set(narrow) - set(wide))
    if lost:  # a width equal to the next level's drops that level's first conv_shortcut: not a copy any more
        raise ValueError(f"a full-size width of {narrow_widths[0] * factor} drops {', '.join(lost)}: "
                         f"give a width other than the 128px level's {narrow_widths[1]}")
    half_old, half_new = narrow_widths[0] // 2, narrow_widths[0] * factor // 2
    hidden = narrow_widths[1]  # the 128px level, kept: what a concatenation holds ahead of a full-size skip
    result = {}
    for key, target in wide.items():
        value = narrow[key]
        if value.shape == target.shape:
            result[key] = value.clone()
            continue
        if key in ("time_embedding.linear_1.weight", "class_embedding.linear_1.weight"):
            # [cos, sin] of half frequencies exp(-ln(1e4) i / half): the narrow set is every factor-th of the wide one
            w = torch.zeros_like(target)
            for i in range(half_old):
                w[:, i * factor] = value[:, i]
                w[:, half_new + i * factor] = value[:, half_old + i]
            result[key] = w
            continue
        w = value
        for dim in range(value.dim()):
            if value.shape[dim] == target.shape[dim]:
                continue
            src = channel_map(value.shape[dim], target.shape[dim], factor, hidden)
            reads = dim == 1  # a conv's or linear's input: the copies share the weight; else each copy has it
            w = split(w, src, dim, gen) if reads else w.index_select(dim, src)
        assert w.shape == target.shape, (key, w.shape, target.shape)
        result[key] = w
    return result


def text_of(source: Path):
    """The pipeline folder's (tokenizer, T5 encoder), for world_inputs."""
    from transformers import T5EncoderModel, T5TokenizerFast

    tokenizer = T5TokenizerFast.from_pretrained(source / "tokenizer")
    return tokenizer, T5EncoderModel.from_pretrained(source / "text_encoder", dtype=torch.float32).eval()


def world_inputs(text, count: int, seed: int):
    """(sample, t, ctx, levels) of `count` world images as pretrain_tiny trains on them (whole 256px images),
    their captions encoded by `text` (text_of's tokenizer and T5)."""
    tokenizer, text_encoder = text
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    x, caps = pretrain_tiny.world_batch(rng, count)
    with torch.no_grad():
        ctx, _ = pretrain_tiny.encode_prompts(tokenizer, text_encoder, caps, "cpu", clean_caption=True)
    x0, cond, levels = pretrain_tiny.stage2_batch(x, 256, gen, tiny.image_noising_scheduler(), 0.9)
    t = torch.randint(0, 1000, (count,), generator=gen)
    noisy = tiny.if_scheduler(2).add_noise(x0, torch.randn(x0.shape, generator=gen), t)
    return torch.cat([noisy, cond], 1), t, ctx.float(), levels


def record(unet, names, batch):
    """({name: (the module's positional inputs, its output)} for the named modules, the UNet's output) for the batch."""
    seen = {}
    hooks = [unet.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, (a, o)))
             for n in names]
    with torch.no_grad():
        out = unet(batch[0], batch[1], encoder_hidden_states=batch[2], class_labels=batch[3]).sample
    for h in hooks:
        h.remove()
    return seen, out


def refit_mixed_norms(narrow_unet, wide_unet, state: dict, factor: int, batch) -> None:
    """Scale and shift of the norms whose groups moved, fitted so their outputs match the narrow UNet's."""
    old_in, _ = record(narrow_unet, MIXED, batch)
    new_in, _ = record(wide_unet, MIXED, batch)
    for name in MIXED:
        groups = narrow_unet.get_submodule(name).num_groups
        n_old = F.group_norm(old_in[name][0][0], groups)
        n_new = F.group_norm(new_in[name][0][0], groups)
        src = channel_map(n_old.shape[1], n_new.shape[1], factor, hidden=narrow_unet.config.block_out_channels[1])
        target = n_old.index_select(1, src)  # the narrow norm's output, before its affine, for each wide channel
        a = n_new.transpose(0, 1).reshape(n_new.shape[1], -1)
        b = target.transpose(0, 1).reshape(n_new.shape[1], -1)
        am, bm = a.mean(1), b.mean(1)
        slope = ((a - am[:, None]) * (b - bm[:, None])).mean(1) / (a - am[:, None]).square().mean(1).clamp(min=1e-12)
        offset = bm - slope * am
        gamma, beta = state[f"{name}.weight"].clone(), state[f"{name}.bias"].clone()
        state[f"{name}.weight"] = gamma * slope
        state[f"{name}.bias"] = gamma * offset + beta


def distil_mixed(narrow_unet, wide_unet, factor: int, batches, steps: int = 1500) -> None:
    """Fit the two resnets that read a moved group to what the narrow ones output, from the narrow UNet's own
    inputs to them (copied as the wide UNet copies them): a local regression, every other weight exact."""
    names = [n.rsplit(".", 1)[0] for n in MIXED]
    pairs = {n: [] for n in names}
    for batch in batches:
        seen, _ = record(narrow_unet, names, batch)
        for n, ((x, temb), y) in seen.items():
            pairs[n].append((x, temb, y))
    for name in names:
        block = wide_unet.get_submodule(name).train()
        opt = torch.optim.Adam(block.parameters(), lr=1e-3)
        data = []
        for x, temb, y in pairs[name]:
            src_in = channel_map(x.shape[1], block.norm1.num_channels, factor, narrow_unet.config.block_out_channels[1])
            src_out = channel_map(y.shape[1], block.conv2.out_channels, factor, hidden=y.shape[1])
            data.append((x.index_select(1, src_in), temb, y.index_select(1, src_out)))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-5)
        for step in range(steps):
            x, temb, y = data[step % len(data)]
            loss = (block(x, temb) - y).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        block.eval()
        with torch.no_grad():
            err = sum(float((block(x, t) - y).square().mean()) for x, t, y in data) / len(data)
            scale = sum(float(y.square().mean()) for _, _, y in data) / len(data)
        print(f"{name}: fitted to the narrow resnet's output, RMS error {err ** 0.5:.4f} (its RMS {scale ** 0.5:.4f})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="source", type=Path, default=None,
                   help="a stage II pipeline folder (default: the package's builtin:shapes-if-ii)")
    p.add_argument("--width", type=int, required=True, help="the full-size level's new width, a whole multiple of its width")
    p.add_argument("--out", type=Path, required=True, help="the wide pipeline folder to write")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    source = args.source or tiny.builtin_model_dir("builtin:shapes-if-ii")
    if not (source / "unet" / "config.json").is_file():
        p.error(f"{source} is not a stage II pipeline folder (no unet/config.json)")
    narrow_widths = tuple(json.loads((source / "unet" / "config.json").read_text())["block_out_channels"])
    if args.width % narrow_widths[0] or args.width <= narrow_widths[0] or args.width == narrow_widths[1]:
        p.error(f"--width {args.width}: {source}'s full-size level has {narrow_widths[0]} channels and its 128px "
                f"level {narrow_widths[1]}; give a whole multiple of {narrow_widths[0]} above it, other than "
                f"{narrow_widths[1]} (which would drop the 128px level's first conv_shortcut)")
    torch.set_num_threads(args.threads)
    from diffusers import UNet2DConditionModel

    from floydtui.train.models import quiet_libraries

    quiet_libraries()
    factor = args.width // narrow_widths[0]
    widths = (args.width,) + narrow_widths[1:]
    narrow = tiny.shapes_unet(2, narrow_widths)
    narrow.load_state_dict(UNet2DConditionModel.from_pretrained(source / "unet", torch_dtype=torch.float32).state_dict())
    narrow.eval()
    wide = tiny.shapes_unet(2, widths).eval()
    gen = torch.Generator().manual_seed(pretrain_tiny.SEED)
    state = widen_state(narrow.state_dict(), wide, narrow_widths, factor, gen)
    wide.load_state_dict(state)
    text = text_of(source)
    refit_mixed_norms(narrow, wide, state, factor, world_inputs(text, 8, pretrain_tiny.SEED))
    wide.load_state_dict(state)
    distil_mixed(narrow, wide, factor, [world_inputs(text, 2, pretrain_tiny.SEED + 10 + i) for i in range(8)])
    check = world_inputs(text, 4, pretrain_tiny.SEED + 1)  # other images than the fit's
    _, a = record(narrow, (), check)
    _, b = record(wide, (), check)
    print(f"wide UNet ({sum(q.numel() for q in wide.parameters()) / 1e6:.2f}M parameters) against the narrow one: "
          f"output RMS difference {float((a - b).square().mean().sqrt()):.4f} (narrow output RMS "
          f"{float(a.square().mean().sqrt()):.4f})")
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    shutil.rmtree(tmp / "unet")
    wide.half().save_pretrained(tmp / "unet")
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
