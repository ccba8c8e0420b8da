"""Score a stage II shapes model the way tests/test_shapes_models.py judges it, and where its edges sit.

    .venv/bin/python scripts/probe_stage2.py                      # the package's builtin:shapes-if-ii
    .venv/bin/python scripts/probe_stage2.py --state output/pretrain-x/shapes-if-ii/state.pt [--raw] [--six]

Prints, for the test's four world images (20 DDPM steps, fixed_small, noise level 250, seeds 0-3):
- the sampled PSNR against the 256px ground truth (the test's bar: better than bicubic);
- the same against the ground truth moved as IFSuperResolutionPipeline's upscale moves it: the
  pipeline upscales the 64px image with `align_corners=True`, which puts the image's content up to
  1.5 px (at 256 px) towards the borders, by an amount that depends on where in the image it is.
  A model that copies the condition's edge positions scores higher against the moved truth; one that
  knows where it is in the image (only full-image training can teach that) scores higher against the
  truth itself;
- bicubic from the clean 64px image, and the moved truth against the truth (a ceiling for a model
  that draws every edge sharp but where the condition puts it).
With --six, also pretrain_tiny's own score (its evaluate()): six other world images at 25 steps.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import pretrain_tiny  # noqa: E402
from floydtui.train import shapes, tiny  # noqa: E402
from floydtui.train.validation import eval_views  # noqa: E402

psnr = pretrain_tiny.psnr


def moved_as_the_pipeline_moves(x: torch.Tensor) -> torch.Tensor:
    """`x` (size n x n) resampled where the pipeline's align_corners=True upscale of its n/4 image puts each pixel.

    Output pixel i of that upscale reads input pixel i * (n/4 - 1) / (n - 1); the same point of the image
    is output pixel (src + 0.5) * 4 - 0.5 in the centre-aligned geometry of the 64px image's reduce.
    """
    n = x.shape[-1]
    src = torch.arange(n, dtype=torch.float32) * (n // 4 - 1) / (n - 1)
    at = (src + 0.5) * 4 - 0.5
    g = (at + 0.5) / n * 2 - 1
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    return F.grid_sample(x, torch.stack([gx, gy], -1)[None].expand(x.shape[0], -1, -1, -1), mode="bilinear",
                         padding_mode="border", align_corners=False)


def pipeline(args):
    from diffusers import DDPMScheduler, IFSuperResolutionPipeline

    from floydtui.train.models import resolve_model_dir

    folder = args.model or resolve_model_dir("builtin:shapes-if-ii", stage=2)
    pipe = IFSuperResolutionPipeline.from_pretrained(folder, safety_checker=None, feature_extractor=None,
                                                     watermarker=None, requires_safety_checker=False,
                                                     dtype=torch.float32)
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, variance_type="fixed_small")
    if args.state:
        state = torch.load(args.state, weights_only=False)
        weights = state["unet" if args.raw else "ema"]
        widths = tuple(weights[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(5))  # as trained
        unet = tiny.shapes_unet(2, widths)
        unet.load_state_dict(weights)
        pipe.unet = unet.half().float().eval()  # as shipped: fp16 weights
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="a stage II pipeline folder (default: the package's)")
    p.add_argument("--state", type=Path, default=None, help="a pretrain_tiny state.pt: its EMA UNet (--raw: its UNet)")
    p.add_argument("--raw", action="store_true")
    p.add_argument("--six", action="store_true", help="also pretrain_tiny's six images at 25 steps")
    p.add_argument("--noise-level", type=int, default=250, help="for the test's four (pretrain_tiny's six: 250)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    for path, kind in ((args.model, "a pipeline folder"), (args.state, "a state.pt file")):
        if path is not None and not path.exists():
            p.error(f"{path} does not exist: give {kind} (pretrain_tiny writes them under its --out and --work)")
    torch.set_num_threads(args.threads)
    from floydtui.train.models import quiet_libraries

    quiet_libraries()
    pipe = pipeline(args)
    rng = random.Random(7)  # the test's images (tests/test_shapes_models.py: world_images)
    rows = []
    for i in range(4):
        scene = shapes.random_scene(rng)
        small, truth = eval_views(np.asarray(shapes.draw(scene, 256).convert("RGB")), 256, 256)
        with torch.no_grad():
            out = pipe(image=small, prompt=scene.caption, num_inference_steps=20, guidance_scale=1.0,
                       noise_level=args.noise_level, generator=torch.Generator().manual_seed(i),
                       output_type="pt").images.float().clamp(-1, 1)
        moved = moved_as_the_pipeline_moves(truth)
        bicubic = F.interpolate(small, (256, 256), mode="bicubic").clamp(-1, 1)
        rows.append((psnr(out, truth), psnr(out, moved), psnr(bicubic, truth), psnr(moved, truth)))
        print(f"{scene.caption}: {rows[-1][0]:.2f} dB (against the moved truth {rows[-1][1]:.2f}); "
              f"bicubic {rows[-1][2]:.2f}; the moved truth {rows[-1][3]:.2f}", flush=True)
    mean = [sum(r[k] for r in rows) / len(rows) for k in range(4)]
    print(f"the test's four: {mean[0]:.2f} dB (against the moved truth {mean[1]:.2f}); bicubic {mean[2]:.2f}; "
          f"the moved truth {mean[3]:.2f}")
    if args.six:  # pretrain_tiny's own final score, its images kept in a folder that goes with it
        with tempfile.TemporaryDirectory() as folder:
            pretrain_tiny.evaluate(2, pipe.unet, pipe.tokenizer, pipe.text_encoder, Path(folder), quick=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
