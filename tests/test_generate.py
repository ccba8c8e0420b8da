"""`floydtui generate` on the built-in tiny models (issue 8).

Real pipelines, real LoRA files: a LoRA is made the way DESIGN.md section 9 says (a peft
adapter on the tiny UNet, lora_B set to small random values, saved with
IFPipeline.save_lora_weights), and run directories are laid out as DESIGN.md section 6 says.
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import WAIT_S, copy_captioned
from floydtui.cli import main

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"]
FAST = ["--steps", "2", "--no-preview"]


def make_lora(folder, stage, seed=1, rank=4, zero=()):
    """A diffusers-format LoRA for the tiny model of `stage`, with effect (lora_B non-zero but in `zero`)."""
    import torch
    from diffusers import IFPipeline, IFSuperResolutionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from floydtui.train.tiny import ensure_builtin

    model = ensure_builtin("builtin:tiny-if-i" if stage == 1 else "builtin:tiny-if-ii")
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 * (not any(z in name for z in zero)))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    cls = IFPipeline if stage == 1 else IFSuperResolutionPipeline
    cls.save_lora_weights(str(folder), unet_lora_layers=layers)
    return folder / "pytorch_lora_weights.safetensors"


def make_run(folder, stage, lora=None, finished=True):
    """A run directory as `floydtui run` leaves it: preset.toml, events.jsonl, the LoRA."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    flavour, model, res = (("i-medium-400m", "builtin:tiny-if-i", 64) if stage == 1 else
                           ("ii-medium-450m", "builtin:tiny-if-ii", 256))
    (folder / "preset.toml").write_text(
        f'[model]\nmodel_flavour = "{flavour}"\npretrained_model_name_or_path = "{model}"\n'
        f'[training]\nresolution = {res}\n[validation]\nvalidation_resolution = "{res}"\n'
        f'[output]\noutput_dir = "{folder}"\n'
        '[[datasets]]\nid = "d"\ntype = "local"\ninstance_data_dir = "/data"\n')
    events = [{"t": 1, "type": "run_start", "run_id": "r", "flavour": flavour, "base_model": "/cache/x",
               "model_id": model, "total_steps": 10, "world_size": 1, "device": "cpu"}]
    if lora:
        shutil.copy(lora, folder / "pytorch_lora_weights.safetensors")
    if finished:
        events.append({"t": 2, "type": "run_end", "status": "completed",
                       "lora_path": str(folder / "pytorch_lora_weights.safetensors")})
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    """Stage I and stage II LoRAs, bare and inside finished runs."""
    root = tmp_path_factory.mktemp("loras")
    one = make_lora(root / "one", 1)
    two = make_lora(root / "two", 2)
    return {"one": one, "two": two, "run1": make_run(root / "run1", 1, one), "run2": make_run(root / "run2", 2, two)}


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def gen(*args):
    return main(["generate", *args])


@pytest.mark.slow
def test_same_seed_same_image_a_lora_changes_it(tmp_path, loras, capsys):
    base = ["--base", "builtin:tiny-if-i", "--prompt", "a red circle", *FAST]
    assert gen(*base, "-o", str(tmp_path / "a")) == 0
    assert gen(*base, "-o", str(tmp_path / "b")) == 0
    assert gen(*base, "--seed", "1", "-o", str(tmp_path / "c")) == 0
    assert gen(*base, "--lora", str(loras["one"].parent), "-o", str(tmp_path / "d")) == 0
    a, b = pixels(tmp_path / "a/0-a-red-circle.png"), pixels(tmp_path / "b/0-a-red-circle.png")
    assert a.shape == (64, 64, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, pixels(tmp_path / "c/1-a-red-circle.png"))
    with_lora = pixels(tmp_path / "d/0-a-red-circle.png")
    assert np.abs(with_lora.astype(int) - a.astype(int)).max() > 8
    out = capsys.readouterr().out
    assert str(tmp_path / "d/0-a-red-circle.png") in out and "1 image(s)" in out


@pytest.mark.slow
def test_every_adapter_loads_not_only_the_first_keys_format(tmp_path):
    # diffusers 0.42 reads the key format off the first key (add_k_proj.lora_A) and, loading such a
    # file as it is, drops the to_q/to_k/to_v/to_out adapters (saved as lora.down/lora.up)
    lora = make_lora(tmp_path / "lora", 1, seed=2, zero=("add_k_proj", "add_v_proj"))
    base = ["--base", "builtin:tiny-if-i", "--prompt", "x", *FAST]
    assert gen(*base, "-o", str(tmp_path / "a")) == 0
    assert gen(*base, "--lora", str(lora), "-o", str(tmp_path / "b")) == 0
    assert np.abs(pixels(tmp_path / "a/0-x.png").astype(int) - pixels(tmp_path / "b/0-x.png").astype(int)).max() > 8


@pytest.mark.slow
def test_the_png_is_what_the_guides_snippet_gives(tmp_path):
    import torch
    from diffusers import DiffusionPipeline

    from floydtui.train.tiny import ensure_builtin

    assert gen("--base", "builtin:tiny-if-i", "--prompt", "a red circle", "--seed", "4", *FAST,
               "-o", str(tmp_path)) == 0
    pipe = DiffusionPipeline.from_pretrained(ensure_builtin("builtin:tiny-if-i"), use_safetensors=True)
    pipe.scheduler = pipe.scheduler.__class__.from_config(pipe.scheduler.config, variance_type="fixed_small")
    image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(4),
                 clean_caption=False).images[0]
    assert np.array_equal(np.asarray(image), pixels(tmp_path / "4-a-red-circle.png"))


@pytest.mark.slow
def test_generate_from_a_real_tiny_run(tmp_path, repo):
    from safetensors import safe_open

    copy_captioned(sorted((repo / "examples/demo-data").glob("*.png"))[:4], tmp_path / "data")
    (tmp_path / "preset.toml").write_text(
        '[model]\nmodel_flavour = "i-medium-400m"\npretrained_model_name_or_path = "builtin:tiny-if-i"\n'
        '[training]\nlora_rank = 4\nlearning_rate = 1e-2\ntrain_batch_size = 2\nmax_train_steps = 3\n'
        'mixed_precision = "no"\nresolution = 32\n'
        '[validation]\nvalidation_resolution = "32"\nvalidation_prompt = "a red circle"\n'
        'validation_num_inference_steps = 2\n[output]\noutput_dir = "run"\n'
        '[[datasets]]\nid = "shapes"\ninstance_data_dir = "data"\nminimum_image_size = 32\n'
        'caption_strategy = "textfile"\n'
        '[[datasets]]\nid = "text-embeds"\ndataset_type = "text_embeds"\ndefault = true\ncache_dir = "cache"\n')
    r = subprocess.run([sys.executable, "-m", "floydtui", "run", str(tmp_path / "preset.toml")], cwd=tmp_path,
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=WAIT_S)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "floydtui", "generate", "--run", str(run), "--prompt", "a red circle",
                        "--size", "32x32", *FAST, "-o", str(tmp_path / "out")], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=WAIT_S)
    assert r.returncode == 0, r.stderr
    lora = run / "pytorch_lora_weights.safetensors"
    with safe_open(str(lora), framework="pt") as f:
        modules = {k.split(".lora")[0] for k in f.keys() if ".lora_A." in k or ".lora.down." in k}
    assert f"{len(modules)} modules adapted" in r.stderr  # every adapter the trainer saved, not the first format's
    side = json.loads((tmp_path / "out/0-a-red-circle.json").read_text())
    assert side["base"] == "builtin:tiny-if-i" and side["run"] == str(run)
    assert side["lora"]["sha256"] == hashlib.sha256(lora.read_bytes()).hexdigest()


@pytest.mark.slow
def test_stage_one_to_two_chain_is_four_times_larger(tmp_path, loras):
    assert gen("--base", "builtin:tiny-if-i", "--lora", str(loras["one"]), "--prompt", "a blue square",
               "--size", "24x16", "--stage2", "builtin:tiny-if-ii", "--stage2-lora", str(loras["two"]),
               "--stage2-steps", "2", "--num-images", "2", "--seed", "5", *FAST, "-o", str(tmp_path)) == 0
    for seed in (5, 6):
        assert Image.open(tmp_path / f"{seed}-a-blue-square.png").size == (24, 16)
        assert Image.open(tmp_path / f"{seed}-a-blue-square-stage2.png").size == (96, 64)
    side = json.loads((tmp_path / "5-a-blue-square-stage2.json").read_text())
    assert side["stage"] == 2 and side["stage1_file"] == "5-a-blue-square.png"
    assert side["stage2"]["model"] == "builtin:tiny-if-ii" and side["stage2"]["size"] == [96, 64]
    assert side["stage2"]["lora"]["sha256"] == hashlib.sha256(loras["two"].read_bytes()).hexdigest()
    assert side["scheduler"]["variance_type"] == "fixed_small"


@pytest.mark.slow
def test_sidecar_holds_every_setting(tmp_path, loras):
    assert gen("--run", str(loras["run1"]), "--prompt", "A Cat, sleeping!", "--negative-prompt", "blurry",
               "--guidance", "5", "--seed", "3", "--size", "32x48", *FAST, "-o", str(tmp_path)) == 0
    side = json.loads((tmp_path / "3-a-cat-sleeping.json").read_text())
    lora = loras["run1"] / "pytorch_lora_weights.safetensors"
    assert side["file"] == "3-a-cat-sleeping.png" and side["prompt"] == "A Cat, sleeping!"
    assert side["base"] == "builtin:tiny-if-i" and side["run"] == str(loras["run1"])
    assert "not a model of anything" in side["base_note"]
    assert side["lora"] == {"path": str(lora), "sha256": hashlib.sha256(lora.read_bytes()).hexdigest()}
    assert (side["negative_prompt"], side["steps"], side["guidance"], side["seed"]) == ("blurry", 2, 5.0, 3)
    assert (side["width"], side["height"], side["size"]) == (32, 48, [32, 48])
    assert side["scheduler"] == {"class": "DDPMScheduler", "variance_type": "fixed_small"}
    assert side["stage2"] is None and side["floydtui_version"]
    assert side["text_encoder_freed"] is True and side["device"] == "cpu"
    assert Image.open(tmp_path / "3-a-cat-sleeping.png").size == (32, 48)


@pytest.mark.slow
def test_wrong_stage_lora_is_refused(tmp_path, loras, capsys):
    assert gen("--base", "builtin:tiny-if-i", "--lora", str(loras["run2"]), "--prompt", "x", *FAST,
               "-o", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "is a stage II LoRA" in err and "--stage2-lora" in err
    assert gen("--base", "builtin:tiny-if-i", "--prompt", "x", "--stage2", "builtin:tiny-if-ii",
               "--stage2-lora", str(loras["run1"]), *FAST, "-o", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "is a stage I LoRA" in err and "pass it as --lora" in err
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.slow
def test_lora_for_another_base_names_the_key_and_both_shapes(tmp_path, loras, capsys):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(loras["one"]))
    key = next(k for k in sorted(tensors) if ".to_q.lora.down." in k)
    width = tensors[key].shape[1]
    tensors[key] = tensors[key][:, : width - 16].clone()  # a base whose attention is 16 narrower
    save_file(tensors, str(tmp_path / "narrow.safetensors"))
    assert gen("--base", "builtin:tiny-if-i", "--lora", str(tmp_path / "narrow.safetensors"), "--prompt", "x",
               *FAST, "-o", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert f"'{key}' has shape [4, {width - 16}]" in err and f"needs [4, {width}]" in err and "--lora" in err

    tensors = load_file(str(loras["one"]))
    tensors["unet.down_blocks.9.attentions.0.to_q.lora_A.weight"] = tensors[key].clone()  # a deeper UNet
    save_file(tensors, str(tmp_path / "deep.safetensors"))
    assert gen("--base", "builtin:tiny-if-i", "--lora", str(tmp_path / "deep.safetensors"), "--prompt", "x",
               *FAST, "-o", str(tmp_path / "out")) == 2
    assert "does not have (down_blocks.9.attentions.0.to_q)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_lora_on_another_base_of_the_right_shape_warns(tmp_path, loras, capsys):
    import shutil

    from floydtui.train.tiny import ensure_builtin

    same = str(ensure_builtin("builtin:tiny-if-i"))
    assert gen("--base", same, "--lora", str(loras["run1"]), "--prompt", "x", *FAST, "-o", str(tmp_path / "a")) == 0
    assert "was trained on" not in capsys.readouterr().err
    other = shutil.copytree(same, tmp_path / "my-if")
    assert gen("--base", str(other), "--lora", str(loras["run1"]), "--prompt", "x", *FAST,
               "-o", str(tmp_path / "b")) == 0
    assert "was trained on builtin:tiny-if-i; generating with " + str(other) in capsys.readouterr().err


@pytest.mark.slow
def test_a_stage_two_run_upscales_a_stage_one_base(tmp_path, loras, capsys):
    assert gen("--run", str(loras["run2"]), "--prompt", "x", *FAST, "-o", str(tmp_path)) == 2
    assert "stage II (upscaler) run" in capsys.readouterr().err
    assert gen("--run", str(loras["run2"]), "--base", "builtin:tiny-if-i", "--size", "16x16", "--stage2-steps", "2",
               "--prompt", "x", *FAST, "-o", str(tmp_path)) == 0
    side = json.loads((tmp_path / "0-x-stage2.json").read_text())
    assert side["stage2"]["lora"]["path"] == str(loras["run2"] / "pytorch_lora_weights.safetensors")
    assert Image.open(tmp_path / "0-x-stage2.png").size == (64, 64)


def test_a_run_samples_as_its_validation_did_unless_a_flag_says_otherwise(tmp_path):
    """`generate --run` takes steps, guidance and seeds from the run's [validation] (what the monitor showed);
    flags win; without --run, and for the other stage, the pipelines' defaults."""
    from floydtui.cli import build_parser
    from floydtui.commands.generate import build_request

    runs = {}
    for stage, sampler in ((1, "validation_num_inference_steps = 20\nvalidation_guidance = 4\nvalidation_seed = 5\n"
                               "num_validation_images = 3\n"),
                           (2, "validation_num_inference_steps = 12\n")):
        run = make_run(tmp_path / f"run{stage}", stage)
        (run / "pytorch_lora_weights.safetensors").write_bytes(b"only read later")
        preset = run / "preset.toml"
        preset.write_text(preset.read_text().replace("[validation]\n", "[validation]\n" + sampler))
        runs[stage] = run

    def request(*argv):
        return build_request(build_parser().parse_args(["generate", "--prompt", "x", "-o", str(tmp_path / "o"),
                                                        *argv]))

    req = request("--run", str(runs[1]))
    assert (req.steps, req.guidance, req.stage2_steps, req.stage2_guidance) == (20, 4.0, 50, 4.0)
    assert (req.seed, req.num_images) == (5, 3)  # the seeds of its validation images: 5, 6, 7
    assert req.notes == [f"seed 5, 3 images, steps 20, guidance 4: the run's validation settings "
                         f"({runs[1] / 'preset.toml'}); --steps / --guidance / --seed / --num-images override them"]
    req = request("--run", str(runs[1]), "--steps", "7", "--seed", "0")
    assert (req.steps, req.guidance, req.seed, req.num_images) == (7, 4.0, 0, 3)
    assert req.notes[0].startswith("3 images, guidance 4: the run's")
    req = request("--run", str(runs[1]), "--steps", "7", "--guidance", "6", "--seed", "1", "--num-images", "1")
    assert (req.steps, req.guidance, req.seed, req.num_images, req.notes) == (7, 6.0, 1, 1, [])
    req = request("--base", "builtin:tiny-if-i")
    assert (req.steps, req.guidance, req.stage2_steps, req.stage2_guidance, req.notes) == (50, 7.0, 50, 4.0, [])
    assert (req.seed, req.num_images) == (0, 1)
    # a stage II run: its validation_guidance "auto" is IFSuperResolutionPipeline's 4; stage I keeps IFPipeline's.
    # Its validation seed and count are the defaults (0, one image), so the note does not name them.
    req = request("--run", str(runs[2]), "--base", "builtin:tiny-if-i")
    assert (req.steps, req.guidance, req.stage2_steps, req.stage2_guidance, req.seed, req.num_images) == \
        (50, 7.0, 12, 4.0, 0, 1)
    assert req.notes[0].startswith("steps 12, guidance 4: ")
    assert "--stage2-steps / --stage2-guidance / --seed / --num-images override them" in req.notes[0]


@pytest.mark.parametrize("args, message", [
    (["--base", "builtin:tiny-if-i", "--size", "65x64"], "65 is not a positive multiple of 8"),
    (["--base", "builtin:tiny-if-i", "--size", "64by64"], "--size '64by64' is not WxH"),
    ([], "no model: give --base MODEL or --run RUN_DIR"),
    (["--base", "builtin:tiny-if-i", "--lora", "/no/such/lora.safetensors"], "no such LoRA file"),
    # These two read the built-in models, building them on a cold cache.
    pytest.param(["--base", "builtin:tiny-if-ii"], "builtin:tiny-if-ii is a stage II model, but --base needs a stage I",
                 marks=pytest.mark.slow),
    pytest.param(["--base", "builtin:tiny-if-i", "--stage2", "builtin:tiny-if-i"], "--stage2 needs a stage II model",
                 marks=pytest.mark.slow),
    (["--base", "builtin:tiny-if-i", "--stage2-lora", "/no/such.safetensors"], "--stage2-lora needs --stage2"),
    (["--run", "/no/such/run"], "no such run directory"),
])
def test_bad_input_exits_2_with_what_and_fix(tmp_path, args, message, capsys):
    assert gen(*args, "--prompt", "x", *FAST, "-o", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and "fix:" in err


@pytest.mark.slow
def test_a_checkpoint_folder_is_not_taken_for_a_lora(tmp_path, capsys):
    ckpt = tmp_path / "run/checkpoints/checkpoint-000010"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text("{}")
    (ckpt / "trainable.safetensors").write_bytes(b"")
    assert gen("--base", "builtin:tiny-if-i", "--lora", str(ckpt), "--prompt", "x", *FAST, "-o", str(tmp_path)) == 2
    assert "is a training checkpoint" in capsys.readouterr().err


def test_unfinished_run_says_it_has_no_lora_yet(tmp_path, capsys):
    run = make_run(tmp_path / "run", 1, finished=False)
    assert gen("--run", str(run), "--prompt", "x", *FAST, "-o", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "still running or was interrupted" in err and "no LoRA yet" in err and "floydtui watch" in err


@pytest.mark.slow
def test_previews_are_half_blocks_in_colour_and_ascii_under_no_color(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    args = ["--base", "builtin:tiny-if-i", "--prompt", "x", "--steps", "2", "-o", str(tmp_path)]
    assert gen(*args) == 0
    assert "▀" in capsys.readouterr().out
    monkeypatch.setenv("NO_COLOR", "1")
    assert gen(*args) == 0
    out = capsys.readouterr().out
    art = [line for line in out.splitlines() if line and not line.startswith(("/", "1 image"))]
    assert len(art) >= 8 and all(set(line) <= set(" .:-=+*#%@") for line in art)
    assert "\x1b[" not in out


def full_run(folder, stage):
    """A finished full fine-tune: the tiny UNet with a shifted output bias saved as RUN/unet."""
    import torch
    from diffusers import UNet2DConditionModel

    from floydtui.train.tiny import ensure_builtin

    unet = UNet2DConditionModel.from_pretrained(ensure_builtin(f"builtin:tiny-if-{'i' * stage}"), subfolder="unet")
    with torch.no_grad():
        unet.conv_out.bias.add_(0.3)
    run = make_run(folder, stage)
    unet.save_pretrained(run / "unet")
    return run


@pytest.mark.slow
def test_full_finetune_runs_use_their_unet(tmp_path):
    run = full_run(tmp_path / "run", 1)
    assert gen("--run", str(run), "--prompt", "x", *FAST, "-o", str(tmp_path / "full")) == 0
    assert gen("--base", "builtin:tiny-if-i", "--prompt", "x", *FAST, "-o", str(tmp_path / "base")) == 0
    assert not np.array_equal(pixels(tmp_path / "full/0-x.png"), pixels(tmp_path / "base/0-x.png"))
    assert json.loads((tmp_path / "full/0-x.json").read_text())["unet"] == str(run / "unet")

    run2 = full_run(tmp_path / "run2", 2)
    assert gen("--run", str(run2), "--base", "builtin:tiny-if-i", "--size", "16x16", "--stage2-steps", "2",
               "--prompt", "x", *FAST, "-o", str(tmp_path / "up")) == 0
    side = json.loads((tmp_path / "up/0-x-stage2.json").read_text())
    assert side["stage2"]["unet"] == str(run2 / "unet") and side["stage2"]["lora"] is None


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_model_loads(tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where the folder should go")
    for out, why in ((tmp_path / "blocker", "is a file, not a folder"),
                     (tmp_path / "blocker" / "pngs", "is a file, so no folder can be made under it")):
        assert gen("--base", "builtin:tiny-if-i", "--prompt", "x", *FAST, "-o", str(out)) == 2
        err = capsys.readouterr().err
        assert "-o/--output" in err and why in err and "internal error" not in err
