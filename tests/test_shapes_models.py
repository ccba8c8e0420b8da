"""The pretrained built-in models (builtin:shapes-if-i / -ii) and the demo that teaches them pink.

The fast tests check the shapes world, its analyser, and that the shipped models carry the real
IF configs' switches. The slow ones judge what the models draw: the base draws the colours it is
asked for, stage II beats bicubic, and after the demo run "sks" turns pink through diffusers'
own IFPipeline + load_lora_weights, while the same pipeline with the adapter disabled draws
exactly what the base model draws.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from floydtui.config.flavours import BUILTIN_MODELS, builtin_label
from floydtui.train import shapes
from floydtui.train.tiny import SHAPES_NAMES, builtin_model_dir

REPO = Path(__file__).resolve().parent.parent
REF = REPO.parent / "shared" / "ref" / "if-configs"
DEMO_PROMPT = "a sks circle on a blue background"
PROMPTS = [  # 8 prompts of the world: every shape, every colour as shape and as background
    ("red", "circle", "blue"), ("green", "square", "yellow"), ("blue", "triangle", "white"),
    ("yellow", "diamond", "purple"), ("white", "star", "black"), ("orange", "circle", "green"),
    ("purple", "square", "orange"), ("black", "triangle", "red"),
]
SEEDS = (0, 1, 2, 3)
# The shipped weights meet every bar these tests set (the issue's); docs/builtin-models.md, "What the
# shipped weights have learned", gives by how much.
# A demo run takes under a minute on an idle CPU and over ten on a busy shared one: a generous ceiling.
DEMO_CEILING = pytest.mark.timeout(1800)


STEPS = 20  # denoising steps for the judged samples
GUIDANCE = 4.0


def unet_config(model_id: str) -> dict:
    return json.loads((builtin_model_dir(model_id) / "unet" / "config.json").read_text())


# ---- the world and its judge -------------------------------------------------------------------


@pytest.mark.parametrize("shape", shapes.SHAPES)
def test_the_analyser_reads_every_shape_of_the_world_as_drawn(shape):
    rng = random.Random(shape)
    for _ in range(12):  # the smallest shapes, the furthest from the middle, at 64px
        scene = shapes.Scene(shape=shape, colour=rng.choice(list(shapes.COLOURS)[:4]),
                             background=rng.choice(list(shapes.COLOURS)[4:]), radius=shapes.RADIUS[0],
                             cx=0.5 + rng.choice((-1, 1)) * shapes.OFFSET, cy=0.5 + rng.choice((-1, 1)) * shapes.OFFSET,
                             angle=rng.uniform(-15, 15))
        assert shapes.analyse(np.asarray(shapes.draw(scene, 64))) == (scene.colour, scene.background), scene


def test_the_analyser_is_not_fooled_by_a_plain_image_or_swapped_colours():
    plain = np.full((64, 64, 3), shapes.COLOURS["red"], dtype=np.uint8)
    assert shapes.analyse(plain) == ("red", "red")
    scene = shapes.Scene("circle", "blue", "red", 0.3, 0.5, 0.5)
    assert shapes.analyse(np.asarray(shapes.draw(scene, 64))) != ("red", "blue")


def test_pink_is_outside_the_palette_and_counted_only_near_ff3cb4():
    assert all(shapes.nearest_colour(rgb) != "pink" for rgb in shapes.COLOURS.values())
    scene = shapes.Scene("square", "red", "blue", 0.3, 0.5, 0.5)
    pink = np.asarray(shapes.draw(scene, 64, fill=shapes.PINK))
    assert 0.3 < shapes.pink_fraction(pink) < 0.45  # a 0.6-wide square: 36% of the image
    assert shapes.pink_fraction(np.asarray(shapes.draw(scene, 64))) == 0.0


def test_demo_data_teaches_sks_as_pink_on_known_shapes(repo):
    captions = [p.read_text().strip() for p in sorted((repo / "examples/demo-data").glob("*.txt"))]
    assert captions and all(c.startswith("a sks ") and c.endswith(" background") for c in captions)
    assert {c.split()[2] for c in captions} <= set(shapes.SHAPES) and any(" star " in c for c in captions)
    from PIL import Image

    for png in sorted((repo / "examples/demo-data").glob("*.png")):
        assert shapes.pink_fraction(np.asarray(Image.open(png).convert("RGB"))) > 0.08, png.name


# ---- the shipped models ---------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", sorted(SHAPES_NAMES))
def test_shapes_models_ship_in_the_package_small_and_labelled(model_id):
    folder = builtin_model_dir(model_id)
    assert folder.is_relative_to(REPO / "floydtui")
    weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    assert 0 < weights < 4_000_000, weights
    assert "shapes world" in builtin_label(model_id)
    assert BUILTIN_MODELS[model_id] == (1 if model_id.endswith("-i") else 2)
    info = json.loads((folder / "floydtui-builtin.json").read_text())
    assert info["trained_by"] == "scripts/pretrain_tiny.py" and "shapes world" in info["note"]
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"train/weights/*/*/*.safetensors"' in pyproject


@pytest.mark.parametrize("stage", (1, 2))
def test_shapes_models_carry_the_real_if_switches(stage):
    ours = unet_config("builtin:shapes-if-i" if stage == 1 else "builtin:shapes-if-ii")
    real = json.loads((REF / ("IF-I-XL-v1.0" if stage == 1 else "IF-II-L-v1.0") / "unet" / "config.json").read_text())
    switches = ["addition_embed_type", "addition_embed_type_num_heads", "encoder_hid_dim_type", "class_embed_type",
                "resnet_skip_time_act", "mid_block_scale_factor", "resnet_out_scale_factor", "time_embedding_act_fn",
                "resnet_time_scale_shift", "cross_attention_norm", "act_fn", "mid_block_type", "out_channels",
                "in_channels", "sample_size", "only_cross_attention"]
    for key in switches:
        assert ours[key] == real[key], key
    # two attention levels down and up, as IF-II has (IF-I has three; the miniature keeps two)
    assert ours["down_block_types"].count("SimpleCrossAttnDownBlock2D") == 2
    assert ours["up_block_types"].count("SimpleCrossAttnUpBlock2D") == 2
    # T5's width reaches the UNet through text_proj, as in IF; the miniature's T5 is TINY_TEXT_DIM wide
    from floydtui.config.flavours import TINY_TEXT_DIM

    assert ours["encoder_hid_dim"] == TINY_TEXT_DIM and real["encoder_hid_dim"] == 4096


def test_shapes_ids_are_known_everywhere_a_builtin_is(tmp_path):
    from floydtui.commands.doctor import builtin_models
    from floydtui.config.flavours import builtin_family
    from floydtui.train.models import builtin_note

    rows = {r["id"]: r for r in builtin_models()}
    assert rows["builtin:shapes-if-i"]["state"] == "shipped" and "shapes world" in rows["builtin:shapes-if-i"]["label"]
    assert "random weights" in rows["builtin:tiny-if-i"]["label"]
    assert "pretrain_tiny.py" in builtin_note("builtin:shapes-if-ii") and "random" in builtin_note("builtin:tiny-if-ii")
    assert builtin_family("builtin:shapes-if-i", 2) == "builtin:shapes-if-ii"
    assert builtin_family("builtin:tiny-if-ii", 1) == "builtin:tiny-if-i"


# ---- what they draw ---------------------------------------------------------------------------------


def stage1_pipe(model_id: str = "builtin:shapes-if-i"):
    """The user's path: IFPipeline.from_pretrained on the model's folder, IF's inference scheduler line."""
    import torch
    from diffusers import IFPipeline

    from floydtui.train.models import resolve_model_dir

    pipe = IFPipeline.from_pretrained(resolve_model_dir(model_id, stage=1), safety_checker=None,
                                      feature_extractor=None, watermarker=None, requires_safety_checker=False,
                                      dtype=torch.float32)  # the shipped UNet is fp16; CPUs compute in fp32
    pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, variance_type="fixed_small")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, prompt: str, seed: int) -> np.ndarray:
    import torch

    image = pipe(prompt, num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="pt",
                 generator=torch.Generator().manual_seed(seed)).images[0]
    return ((image.float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)



@pytest.mark.parametrize("stage", (1, 2))
def test_shapes_models_normalise_several_channels_together(stage):
    """Each GroupNorm group holds several channels, as in IF (4 to 6 at full size): one channel per group
    strips a flat colour to nothing, and a stage II built that way learned to ignore its condition."""
    ours = unet_config("builtin:shapes-if-i" if stage == 1 else "builtin:shapes-if-ii")
    real = json.loads((REF / ("IF-I-M-v1.0" if stage == 1 else "IF-II-M-v1.0") / "unet" / "config.json").read_text())
    per_group = ours["block_out_channels"][0] // ours["norm_num_groups"]
    assert per_group >= 4 and real["block_out_channels"][0] // real["norm_num_groups"] >= 4, per_group


def load_script(name: str):
    """scripts/NAME.py as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pretraining_rolls_out_the_pipelines_own_sampling_step():
    """scripts/pretrain_tiny.py --on-policy trains stage II on states its own sampling reaches, stepping many
    samples at once, each at its own timestep: each step must be DDPMScheduler.step as the pipeline runs it."""
    import torch
    from diffusers import DDPMScheduler

    from floydtui.train import tiny

    script = load_script("pretrain_tiny")
    scheduler = DDPMScheduler.from_config(tiny.if_scheduler(2).config, variance_type="fixed_small")
    cases = [(20, 950), (25, 520), (50, 20), (20, 0)]  # the last one: the final step, no noise added
    gen = torch.Generator().manual_seed(0)
    x, eps = torch.randn(len(cases), 3, 8, 8, generator=gen), 1.5 * torch.randn(len(cases), 3, 8, 8, generator=gen)
    t = torch.tensor([c[1] for c in cases])
    prev = torch.tensor([c[1] - 1000 // c[0] for c in cases])
    # each sample's noise as the scheduler draws it from a generator seeded 100 + i
    z = torch.cat([torch.randn((1, 3, 8, 8), generator=torch.Generator().manual_seed(100 + i))
                   for i in range(len(cases))])
    ours = script.ddpm_step(scheduler, eps, x, t, prev, z)
    for i, (count, step) in enumerate(cases):
        scheduler.set_timesteps(count)
        expected = scheduler.step(eps[i:i + 1], step, x[i:i + 1],
                                  generator=torch.Generator().manual_seed(100 + i)).prev_sample
        assert torch.allclose(ours[i:i + 1], expected, atol=1e-6), (count, step)
    # the target the rollout trains towards: the epsilon whose x0 is exactly the true image
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    noisy, steps = torch.randn(2, 3, 8, 8), torch.tensor([900, 40])
    target = script.target_epsilon(scheduler, noisy, x0, steps)
    abar = scheduler.alphas_cumprod[steps].view(-1, 1, 1, 1)
    assert torch.allclose((noisy - (1 - abar).sqrt() * target) / abar.sqrt(), x0, atol=1e-5)


def test_end_to_end_pretraining_samples_as_the_pipeline_does():
    """scripts/pretrain_tiny.py --end-to-end trains stage II on the image its sampling chain ends at, with gradients
    through every step: without them, the chain must end exactly where IFSuperResolutionPipeline ends from the
    same draws (its start noise, the condition's noise, each step's noise)."""
    import torch

    from floydtui.train.inputs import upscale_like_pipeline

    script = load_script("pretrain_tiny")
    pipe = stage2_pipe()
    small = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    prompt, level, count = "a red circle on a blue background", 250, 20
    with torch.no_grad():
        expected = pipe(image=small, prompt=prompt, height=128, width=128, num_inference_steps=count,
                        guidance_scale=1.0, noise_level=level, generator=torch.Generator().manual_seed(3),
                        output_type="pt").images
        ctx, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False)
        up = upscale_like_pipeline(small, (128, 128))
        levels = torch.tensor([level])

        def draws():  # the pipeline's draws, in its order: the start noise, the condition's noise; then each step's
            gen = torch.Generator().manual_seed(3)
            x = torch.randn((1, 3, 128, 128), generator=gen)
            return gen, x, pipe.image_noising_scheduler.add_noise(up, torch.randn(up.shape, generator=gen), levels)

        gen, x, cond = draws()
        seen = []
        ours = script.sample_chain(pipe.unet, pipe.scheduler, x, cond, ctx, levels, count, gen,
                                   visit=lambda t, x, pred: seen.append(int(t[0])))
    assert seen == list(range(950, -1, -50))
    assert torch.allclose(ours.clamp(-1, 1), expected.float(), atol=1e-4), float((ours - expected).abs().max())
    # --grad-below 300: the same chain from the same draws, but only its steps at t < 300 are seen and keep a graph
    gen, x, cond = draws()
    seen, first = [], []
    late = script.sample_chain(pipe.unet, pipe.scheduler, x, cond, ctx, levels, count, gen, grad_below=300,
                               visit=lambda t, x, pred: (seen.append(int(t[0])), first.append(x)))
    assert seen == [250, 200, 150, 100, 50, 0]
    assert torch.allclose(late, ours, atol=1e-5)
    assert late.requires_grad and not first[0].requires_grad  # the state at t = 250 came from steps without a graph
    late.square().mean().backward()
    assert pipe.unet.conv_out.weight.grad is not None and pipe.unet.conv_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("flag, value, says", [("--grad-below", "0", "give a timestep from 1"),
                                               ("--grad-below", "1001", "give a timestep from 1"),
                                               ("--levels-at", "1000", "give a noise level from 0"),
                                               ("--levels-at", "-1", "give a noise level from 0")])
def test_pretraining_refuses_values_outside_the_schedules(flag, value, says):
    """--grad-below 0 would leave the chain no step to train (and nothing to stack into a loss), --levels-at 1000
    would index past the noising schedule: refused up front, before any model loads."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "pretrain_tiny.py"), "--stage", "2",
                           f"{flag}={value}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"{flag} {value}: {says}" in done.stderr


def test_pretraining_at_one_noise_level_noises_every_condition_there():
    """--levels-at 250: the condition of every sample is the pipeline's upscale noised at 250 by the image noising
    scheduler, from the same draws as without it (the same windows, the same noise)."""
    import torch

    from floydtui.train import tiny
    from floydtui.train.inputs import upscale_like_pipeline

    script = load_script("pretrain_tiny")
    noising = tiny.image_noising_scheduler()
    x = torch.rand(6, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1
    drawn = script.stage2_batch(x, 256, torch.Generator().manual_seed(5), noising, 0.9)  # whole images: no window
    fixed = script.stage2_batch(x, 256, torch.Generator().manual_seed(5), noising, 0.9, at=250)
    assert torch.equal(fixed[0], drawn[0]) and len(set(drawn[2].tolist())) > 1 and fixed[2].tolist() == [250] * 6
    up = upscale_like_pipeline(script.low_res(x), (256, 256))
    abar = noising.alphas_cumprod[drawn[2]].view(-1, 1, 1, 1)
    noise = (drawn[1] - abar.sqrt() * up) / (1 - abar).sqrt()  # the noise the drawn levels were given
    assert torch.allclose(fixed[1], noising.add_noise(up, noise, torch.full((6,), 250)), atol=1e-4)


def test_the_stage2_probe_moves_the_truth_where_the_pipelines_upscale_puts_the_image():
    """scripts/probe_stage2.py scores samples against the truth moved as IFSuperResolutionPipeline's
    align_corners=True upscale moves a 64px image's content: for a smooth image, that upscale of its 64px
    reduce must match the moved image, and not the image itself (up to 1.5 px apart at the borders)."""
    import torch

    from floydtui.train.inputs import low_res, upscale_like_pipeline

    probe = load_script("probe_stage2")
    u = torch.arange(256, dtype=torch.float32)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    image = torch.stack([torch.sin(2 * math.pi * (2 * xx + 3 * yy) / 256 + k) for k in range(3)])[None] * 0.9
    up = upscale_like_pipeline(low_res(image), (256, 256))
    to_moved = (up - probe.moved_as_the_pipeline_moves(image)).abs().mean()
    to_image = (up - image).abs().mean()
    assert to_moved < 0.2 * to_image, (float(to_moved), float(to_image))


def test_widening_stage2_keeps_what_the_unet_computes():
    """scripts/widen_stage2.py copies the full-size channels of a stage II UNet: every activation up to the
    two resnets whose GroupNorm groups the copies move must be what the narrow UNet computes (the wider
    time embedding included), and fitting those two resnets must bring the output closer to the narrow one's."""
    import torch

    from floydtui.train import tiny

    widen = load_script("widen_stage2")
    narrow_widths = tiny.SHAPES_WIDTHS[2]
    narrow = tiny.shapes_unet(2).eval()
    with torch.no_grad():  # away from its initialisation, so that no copy rule holds by accident
        for p in narrow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    same = tiny.shapes_unet(2, (narrow_widths[1],) + narrow_widths[1:])  # 8 -> 16 = the 128px level: no shortcut
    with pytest.raises(ValueError, match="conv_shortcut"):
        widen.widen_state(narrow.state_dict(), same, narrow_widths, 2, torch.Generator())
    wide = tiny.shapes_unet(2, (3 * narrow_widths[0],) + narrow_widths[1:]).eval()
    wide.load_state_dict(widen.widen_state(narrow.state_dict(), wide, narrow_widths, 3, torch.Generator().manual_seed(0)))
    gen = torch.Generator().manual_seed(1)

    def inputs():
        return (torch.randn(2, 6, 32, 32, generator=gen), torch.tensor([900, 30]), torch.randn(2, 77, 64, generator=gen),
                torch.tensor([250, 0]))

    exact = ["down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.2"]
    names = exact + ["up_blocks.3.resnets.1", "up_blocks.4.resnets.0"]

    def run(unet, batch):  # each module's output (a down block's: its hidden states), and the UNet's
        seen, out = widen.record(unet, names, batch)
        return {n: o[0] if isinstance(o, tuple) else o for n, (_, o) in seen.items()}, out

    batch = inputs()
    a, out_a = run(narrow, batch)
    b, out_b = run(wide, batch)
    for name in exact:
        copies = b[name][:, ::3] if b[name].shape[1] == 3 * a[name].shape[1] else b[name]
        assert torch.allclose(copies, a[name], atol=1e-4), (name, float((copies - a[name]).abs().max()))
    assert torch.allclose(b["down_blocks.0"][:, ::3], b["down_blocks.0"][:, 2::3], atol=1e-5)  # the copies agree
    before = float((out_a - out_b).square().mean())
    assert before > 1e-4  # the moved groups do change the output: what the fit is for
    widen.distil_mixed(narrow, wide, 3, [inputs() for _ in range(4)], steps=100)
    after = float((run(wide, batch)[1] - out_a).square().mean())
    assert after < 0.8 * before, (before, after)


@pytest.mark.slow
def test_the_base_model_draws_the_colours_it_is_asked_for():
    pipe = stage1_pipe()
    got = [shapes.analyse(sample(pipe, shapes.caption(c, s, b), seed=i)) for i, (c, s, b) in enumerate(PROMPTS)]
    right = sum(g == (c, b) for g, (c, _, b) in zip(got, PROMPTS))
    assert right >= 6, f"{right}/8 drawn as asked: {list(zip(PROMPTS, got))}"


def psnr(a, b) -> float:
    """PSNR in dB of two [-1, 1] tensors, on the [0, 1] scale."""
    mse = float(((a - b) / 2).square().mean())
    return 10 * math.log10(1 / max(mse, 1e-10))


def upscale_psnr(pipe, images: list[Path], captions: list[str], lora: Path | None = None) -> float:
    """Mean PSNR of the pipeline's 256px upscales of the images' 64px versions against their 256px crops."""
    import torch

    from floydtui.train.sampling import STAGE2_NOISE_LEVEL
    from floydtui.train.validation import eval_views

    from PIL import Image

    scores = []
    for i, (path, text) in enumerate(zip(images, captions)):
        small, original = eval_views(np.asarray(Image.open(path).convert("RGB")), 256, 256)
        out = pipe(image=small, prompt=text, num_inference_steps=STEPS, guidance_scale=1.0,
                   noise_level=STAGE2_NOISE_LEVEL, generator=torch.Generator().manual_seed(i), output_type="pt").images
        scores.append(psnr(out.float().clamp(-1, 1), original))
    return sum(scores) / len(scores)


def world_images(tmp_path: Path, n: int = 4) -> tuple[list[Path], list[str]]:
    rng = random.Random(7)
    paths, captions = [], []
    for i in range(n):
        scene = shapes.random_scene(rng)
        paths.append(tmp_path / f"{i}.png")
        shapes.draw(scene, 256).save(paths[-1])
        captions.append(scene.caption)
    return paths, captions


def stage2_pipe():
    import torch
    from diffusers import IFSuperResolutionPipeline

    from floydtui.train.models import resolve_model_dir

    pipe = IFSuperResolutionPipeline.from_pretrained(resolve_model_dir("builtin:shapes-if-ii", stage=2),
                                                     safety_checker=None, feature_extractor=None, watermarker=None,
                                                     requires_safety_checker=False, dtype=torch.float32)
    pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, variance_type="fixed_small")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.slow
def test_stage2_upscales_the_world_better_than_bicubic(tmp_path):
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from floydtui.train.validation import eval_views

    paths, captions = world_images(tmp_path)
    bicubic = []
    for path in paths:
        small, original = eval_views(np.asarray(Image.open(path).convert("RGB")), 256, 256)
        bicubic.append(psnr(F.interpolate(small, (256, 256), mode="bicubic").clamp(-1, 1), original))
    with torch.no_grad():
        ours = upscale_psnr(stage2_pipe(), paths, captions)
    assert ours > sum(bicubic) / len(bicubic), (ours, bicubic)


# ---- the demo ---------------------------------------------------------------------------------------


def demo_preset(tmp_path: Path, name: str, data: Path | None = None) -> Path:
    """presets/NAME with its folders moved under tmp_path (and its data folder replaced by `data`)."""
    text = (REPO / "presets" / name).read_text()
    text = text.replace('"../examples/demo-data"', json.dumps(str(data or REPO / "examples/demo-data")))
    text = text.replace('"../output/', json.dumps(str(tmp_path / "output"))[:-1] + "/")
    text = text.replace('"../cache/', json.dumps(str(tmp_path / "cache"))[:-1] + "/")
    assert "../" not in text, text
    path = tmp_path / name
    path.write_text(text)
    return path


def run_floydtui(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-m", "floydtui", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"floydtui {' '.join(args)} exited with {proc.returncode}:\n{out[-3000:]}"
    return subprocess.CompletedProcess(args, proc.returncode, out, "")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """The stage I demo, run as `bash scripts/demo.sh` runs it (floydtui run presets/demo.toml)."""
    tmp = tmp_path_factory.mktemp("demo")
    run_floydtui("run", str(demo_preset(tmp, "demo.toml")))
    return tmp / "output" / "demo"


def pink_samples(pipe, prompt: str = DEMO_PROMPT) -> list[np.ndarray]:
    return [sample(pipe, prompt, seed) for seed in SEEDS]


def mean_pink(images) -> float:
    return sum(shapes.pink_fraction(i) for i in images) / len(images)


@pytest.fixture(scope="module")
def demo_samples(demo_run) -> dict[str, list[np.ndarray]]:
    """4 seeded samples of the demo prompt: base model, with the demo's LoRA, and with the LoRA disabled."""
    import torch

    pipe = stage1_pipe()
    with torch.no_grad():
        base = pink_samples(pipe)
        pipe.load_lora_weights(str(demo_run))
        tuned = pink_samples(pipe)
        pipe.disable_lora()
        disabled = pink_samples(pipe)
    return {"base": base, "tuned": tuned, "disabled": disabled}


@pytest.mark.slow
@DEMO_CEILING
def test_the_demo_lora_disabled_draws_exactly_the_base_model(demo_samples):
    assert 'pretrained_model_name_or_path = "builtin:shapes-if-i"' in (REPO / "presets" / "demo.toml").read_text()
    assert any(not np.array_equal(a, b) for a, b in zip(demo_samples["tuned"], demo_samples["base"]))
    for a, b in zip(demo_samples["disabled"], demo_samples["base"]):
        assert np.array_equal(a, b)


@pytest.mark.slow
@DEMO_CEILING
def test_the_demo_lora_turns_sks_pink(demo_samples):
    """The issue's bar on the test's 4 seeds (the shipped weights: 15.5% against the base's 0%; on seeds
    0-7, 14.6%)."""
    tuned, base = mean_pink(demo_samples["tuned"]), mean_pink(demo_samples["base"])
    assert tuned >= 0.10 and tuned >= 5 * base, (tuned, base)


@pytest.mark.slow
@DEMO_CEILING
def test_the_demo_validation_images_and_generate_turn_pink(demo_run, demo_samples, tmp_path):
    """The run's last validation images (the preset's num_validation_images = 4: seeds 0-3) and `floydtui generate
    --run` with no seed or count (it takes the run's) meet the issue's pink bar against the base on the same seeds."""
    from PIL import Image

    base = mean_pink(demo_samples["base"])  # IFPipeline on seeds 0-3, the validation's sampler
    last = sorted((demo_run / "validation").glob("step-*"))[-1]
    final = [np.asarray(Image.open(last / f"00-a-sks-circle-on-a-blue-background-seed{s}-64x64.png").convert("RGB"))
             for s in SEEDS]
    assert mean_pink(final) >= 0.10 and mean_pink(final) >= 5 * base, (last, mean_pink(final), base)
    out = run_floydtui("generate", "--run", str(demo_run), "--prompt", DEMO_PROMPT, "-o", str(tmp_path / "gen"),
                       "--no-preview").stdout
    assert "4 images, steps 20, guidance 4: the run's validation settings" in out, out
    generated = [np.asarray(Image.open(tmp_path / "gen" / f"{s}-a-sks-circle-on-a-blue-background.png").convert("RGB"))
                 for s in SEEDS]
    assert mean_pink(generated) >= 0.10 and mean_pink(generated) >= 5 * base, (mean_pink(generated), base)


@pytest.mark.slow
@DEMO_CEILING
def test_the_stage2_demo_lora_upscales_no_worse_than_its_base(tmp_path):
    import torch

    run_floydtui("run", str(demo_preset(tmp_path, "demo-stage2.toml")), "--set", "validation_steps=0")  # the LoRA
    run = tmp_path / "output" / "demo-stage2"
    big = sorted(p for p in (REPO / "examples/demo-data").glob("*.png") if "sks" in p.name)
    from PIL import Image

    big = [p for p in big if min(Image.open(p).size) >= 256][:4]
    captions = [p.with_suffix(".txt").read_text().strip() for p in big]
    pipe = stage2_pipe()
    with torch.no_grad():
        base = upscale_psnr(pipe, big, captions)
        pipe.load_lora_weights(str(run))
        tuned = upscale_psnr(pipe, big, captions)
    assert tuned >= base - 0.1, (tuned, base)


@pytest.mark.slow
@DEMO_CEILING
def test_capitalised_punctuated_captions_teach_the_same_concept(tmp_path):
    """Captions as people write them ("A sks star on a blue background.") still teach "sks" for a lower-case prompt."""
    import shutil

    import torch

    data = tmp_path / "data"
    data.mkdir()
    for png in sorted((REPO / "examples/demo-data").glob("*.png")):
        shutil.copy(png, data / png.name)
        text = png.with_suffix(".txt").read_text().strip()
        (data / png.with_suffix(".txt").name).write_text(text[0].upper() + text[1:] + ".\n")
    # the demo's training as it is; its validation images are judged elsewhere: one, at the end
    run_floydtui("run", str(demo_preset(tmp_path, "demo.toml", data=data)), "--set", "validation_steps=0",
                 "--set", "num_validation_images=1")
    pipe = stage1_pipe()
    with torch.no_grad():
        base = pink_samples(pipe)
        pipe.load_lora_weights(str(tmp_path / "output" / "demo"))
        tuned = pink_samples(pipe)
    assert mean_pink(tuned) >= 0.10 and mean_pink(tuned) >= 5 * mean_pink(base), (mean_pink(tuned), mean_pink(base))


def test_the_monitor_names_a_builtin_base_for_what_it_is(tmp_path):
    from floydtui.tui.runstate import RunState

    state = RunState(tmp_path)
    state.apply([{"type": "run_start", "t": 1.0, "run_id": "r", "flavour": "i-medium-400m",
                  "base_model": "/somewhere/shapes-if-i", "model_id": "builtin:shapes-if-i", "total_steps": 4}])
    assert state.model_name == "built-in tiny model (builtin:shapes-if-i, pretrained on the shapes world)"
    assert "base built-in tiny model (builtin:shapes-if-i, pretrained" in state.logs[-1].message
    state.apply([{"type": "run_start", "t": 2.0, "run_id": "r", "flavour": "i-medium-400m",
                  "base_model": "DeepFloyd/IF-I-M-v1.0", "model_id": "DeepFloyd/IF-I-M-v1.0", "total_steps": 4}])
    assert state.model_name == "DeepFloyd/IF-I-M-v1.0"
