"""README's before/after row: the demo prompt from the base model (top) and with the demo's LoRA (bottom).

    bash scripts/demo.sh && .venv/bin/python scripts/before_after.py [--run output/demo] [-o docs/before-after.png]

Same seeds in both rows, diffusers' own IFPipeline + load_lora_weights (the user's path), each
64px sample enlarged 3x with nearest pixels so the shapes stay crisp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch
    from diffusers import IFPipeline
    from PIL import Image, ImageDraw

    from floydtui.config.preset import load_preset
    from floydtui.train.models import quiet_libraries, resolve_model_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=ROOT / "output" / "demo")
    p.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "before-after.png")
    p.add_argument("--seeds", type=int, default=6)
    args = p.parse_args()
    quiet_libraries()
    preset = load_preset(ROOT / "presets" / "demo.toml")
    prompt = preset.validation_prompt_list[0]
    pipe = IFPipeline.from_pretrained(resolve_model_dir(preset.base_model, stage=1), safety_checker=None,
                                      feature_extractor=None, watermarker=None, requires_safety_checker=False,
                                      dtype=torch.float32)  # the shipped UNet is fp16; CPUs compute in fp32
    pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, variance_type="fixed_small")
    pipe.set_progress_bar_config(disable=True)

    def row() -> list:
        return [pipe(prompt, num_inference_steps=20, guidance_scale=4.0, generator=torch.Generator().manual_seed(s),
                     output_type="pil").images[0] for s in range(args.seeds)]

    with torch.no_grad():
        before = row()
        pipe.load_lora_weights(str(args.run))
        after = row()
    scale, pad, label_w = 3, 6, 150
    side = 64 * scale
    sheet = Image.new("RGB", (label_w + args.seeds * (side + pad), 2 * (side + pad) + 24), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 4), f'"{prompt}", seeds 0-{args.seeds - 1}', fill=(0, 0, 0))
    for r, (label, images) in enumerate((("base model", before), ("with the demo LoRA", after))):
        y = 24 + r * (side + pad)
        draw.text((pad, y + side // 2), label, fill=(0, 0, 0))
        for i, im in enumerate(images):
            sheet.paste(im.resize((side, side), Image.Resampling.NEAREST), (label_w + i * (side + pad), y))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, optimize=True)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
