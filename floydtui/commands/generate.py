"""`floydtui generate`: images from a base model + LoRA, saved as PNG and previewed in the terminal.

This module turns flags into a `floydtui.train.generate.Request` (every flag problem reported at
once, exit 2) and draws each image as it is saved; the engine does the rest. Progress goes to
stderr, saved paths and previews to stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from floydtui.config.flavours import GUIDANCE
from floydtui.errors import FloydError, Problem
from floydtui.hub.disk import folder_problem


def build_request(args: argparse.Namespace):
    """The engine's Request from parsed flags; FloydError listing every problem found."""
    from floydtui.train.generate import Request, find_lora_file, parse_size, read_run, recorded_clean_caption
    from floydtui.train.sampling import PIPELINE_STEPS

    problems: list[Problem] = []

    def attempt(fn, *a):
        try:
            return fn(*a)
        except FloydError as e:
            problems.extend(e.problems)
            return None

    prompts = [p for p in args.prompt if p.strip()]
    if not prompts:
        problems.append(Problem("no prompt given", where="--prompt",
                                hint='add --prompt "a red circle on a blue background" (repeat it for more)'))
    for flag, value in (("--steps", args.steps), ("--stage2-steps", args.stage2_steps),
                        ("--num-images", args.num_images)):
        if value is not None and value < 1:
            problems.append(Problem(f"{flag} {value} must be at least 1", where=flag, hint=f"e.g. {flag} 30"))
    for flag, value in (("--guidance", args.guidance), ("--stage2-guidance", args.stage2_guidance)):
        if value is not None and value < 0:
            problems.append(Problem(f"{flag} {value} is negative", where=flag,
                                    hint="IF's usual values are 7 (stage I) and 4 (stage II); 1 or less turns "
                                         "classifier-free guidance off"))
    image = Path(args.image).expanduser() if args.image else None
    if image is not None and not image.is_file():
        problems.append(Problem(f"--image {image}: no such file", where="--image",
                                hint="give the PNG to upscale, e.g. a stage I image floydtui generate saved"))
    if image is not None and (args.base or args.size):
        flag = "--base" if args.base else "--size"
        problems.append(Problem(f"--image is upscaled by stage II alone; {flag} would make a stage I image to "
                                "compete with it", where=flag, hint=f"drop {flag}, or drop --image"))
    size = attempt(parse_size, args.size) if args.size is not None else None
    output = Path(args.output).expanduser()
    reason = folder_problem(output)  # before any model loads: a sampled image is never lost to a bad -o
    if reason:
        problems.append(Problem(f"-o {output} cannot be used: {reason}", where="-o/--output",
                                hint="give a folder this user can write for the PNGs (it is created if missing)"))

    base, lora, stage2, stage2_lora = args.base, None, args.stage2, None
    unet, stage2_unet, revision, variant = None, None, "main", "auto"
    flags = {"base": "--base", "lora": "--lora", "stage2": "--stage2", "stage2_lora": "--stage2-lora"}
    if args.lora:
        lora = attempt(find_lora_file, args.lora, "--lora")
    if args.stage2_lora:
        stage2_lora = attempt(find_lora_file, args.stage2_lora, "--stage2-lora")
    run = attempt(read_run, args.run) if args.run else None
    if run and run.stage == 1:
        for flag, value in (("--base", args.base), ("--lora", args.lora)):
            if value:
                problems.append(Problem(f"--run already gives the base model and LoRA; {flag} would compete with it",
                                        where=flag, hint=f"drop {flag}, or drop --run and give --base and --lora"))
        base, lora, unet, revision, variant = run.base, run.lora, run.unet, run.revision, run.variant
        flags.update(base="--run", lora="--run")
    elif run and run.stage == 2:
        for flag, value in (("--stage2", args.stage2), ("--stage2-lora", args.stage2_lora)):
            if value:
                problems.append(Problem(f"--run of a stage II run already gives the stage II model and LoRA; {flag} "
                                        "would compete with it", where=flag, hint=f"drop {flag}, or drop --run"))
        stage2, stage2_lora, stage2_unet = run.base, run.lora, run.unet
        flags.update(stage2="--run", stage2_lora="--run")
        if not args.base and image is None:
            problems.append(Problem(f"{run.folder} is a stage II (upscaler) run: it needs a stage I image to upscale",
                                    where="--base", hint="add the stage I model, e.g. --base DeepFloyd/IF-I-M-v1.0 "
                                                         "(and its LoRA with --lora)"))
    elif not args.run and not args.base and image is None:
        problems.append(Problem("no model: give --base MODEL or --run RUN_DIR", where="--base",
                                hint="e.g. --base DeepFloyd/IF-I-M-v1.0 --lora output/my-lora, or "
                                     "--run output/my-lora, or --base builtin:shapes-if-i to try it"))
    if image is not None and not stage2:
        problems.append(Problem("--image needs --stage2 MODEL (or --run of a stage II run) to upscale it",
                                where="--image", hint="add e.g. --stage2 DeepFloyd/IF-II-M-v1.0"))
    if args.stage2_lora and not stage2:
        problems.append(Problem("--stage2-lora needs --stage2 MODEL, the stage II model it was trained on",
                                where="--stage2-lora", hint="add e.g. --stage2 DeepFloyd/IF-II-M-v1.0"))
    if problems:
        raise FloydError(problems)
    clean_caption = args.clean_caption
    if clean_caption is None:  # the setting the LoRA was trained with: the run's preset, else the file's header
        clean_caption = run.clean_caption if run else recorded_clean_caption(lora or stage2_lora)
    # steps and guidance per stage: the flag, else (with --run) what the run's validation images used, else the
    # pipeline's default
    from_run = {run.stage: {"steps": run.steps, "guidance": run.guidance}} if run and run.steps is not None else {}
    taken: list[str] = []
    seed, num_images = args.seed, args.num_images
    if run and run.seed is not None:  # the run's validation seeds, as the monitor showed them
        if seed is None:
            seed = run.seed
            taken += [f"seed {seed}"] if seed != 0 else []
        if num_images is None:
            num_images = run.num_images
            taken += [f"{num_images} images"] if num_images != 1 else []
    seed = 0 if seed is None else seed
    num_images = 1 if num_images is None else num_images

    def setting(stage: int, name: str, flag, default):
        if flag is not None:
            return flag
        if stage in from_run:
            taken.append(f"{name} {from_run[stage][name]:g}")
            return from_run[stage][name]
        return default

    steps = setting(1, "steps", args.steps, PIPELINE_STEPS)
    guidance = setting(1, "guidance", args.guidance, GUIDANCE[1])
    stage2_steps = setting(2, "steps", args.stage2_steps, PIPELINE_STEPS)
    stage2_guidance = setting(2, "guidance", args.stage2_guidance, GUIDANCE[2])
    notes = []
    if taken:
        flags_of = ("--steps / --guidance" if run.stage == 1 else "--stage2-steps / --stage2-guidance") \
            + " / --seed / --num-images"
        notes.append(f"{', '.join(taken)}: the run's validation settings ({run.folder / 'preset.toml'}); "
                     f"{flags_of} override them")
    return Request(base=base, prompts=prompts, output=output, lora=lora, negative_prompt=args.negative_prompt,
                   steps=steps, guidance=guidance, seed=seed, size=size, num_images=num_images,
                   stage2=stage2, stage2_lora=stage2_lora, stage2_steps=stage2_steps,
                   stage2_guidance=stage2_guidance, image=image, clean_caption=clean_caption, revision=revision,
                   variant=variant, unet=unet, stage2_unet=stage2_unet, run=run.folder if run else None, flags=flags,
                   notes=notes)


def main(args: argparse.Namespace) -> int:
    """Generate, save and preview; 0 done, 1 out of memory, 2 bad flags (raised as FloydError)."""
    from rich.console import Console

    from floydtui.config.flavours import stage_name
    from floydtui.train.generate import generate
    from floydtui.preview import colour_enabled, render

    from floydtui.train.models import quiet_libraries

    req = build_request(args)
    quiet_libraries()
    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    colour = colour_enabled() and out.is_terminal  # half-blocks mean nothing in a pipe or a log file

    def show(item) -> None:
        out.print(f"{item.path}  {item.width}x{item.height}  seed {item.seed}  {stage_name(item.stage)}",
                  markup=False, soft_wrap=True)
        if not args.no_preview:
            out.print(render(item.image, max_cols=min(64, out.width), max_rows=32, colour=colour), markup=False)

    try:
        images = generate(req, on_image=show, say=lambda msg: err.print(msg, markup=False, soft_wrap=True))
    except RuntimeError as e:
        if "out of memory" not in str(e).lower():
            raise
        err.print(f"error: out of memory: {e}\n  fix: lower --size or --num-images, or free the GPU "
                  "(other processes on it show in nvidia-smi)", markup=False)
        return 1
    out.print(f"{len(images)} image(s), each with a .json sidecar of its settings, in {req.output}",
              markup=False, soft_wrap=True)
    return 0

