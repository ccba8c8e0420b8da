"""The training engine on the built-in tiny model: runs, resume, the embed cache, model folders.

Everything runs for real (diffusers, peft, accelerate, torch on the CPU) at tiny sizes:
32px images, a handful of steps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import WAIT_S, copy_captioned, finish, spawn
from floydtui.config.preset import load_preset
from floydtui.errors import FloydError
from floydtui.events import EVENT_TYPES, EventWriter, read_events

REPO = Path(__file__).resolve().parent.parent
ALL_EVENTS = set(EVENT_TYPES)


def write_preset(tmp_path: Path, *, images: int = 8, steps: int = 4, model: str = "builtin:tiny-if-i",
                 training: str = "", name: str = "preset.toml") -> Path:
    """A preset on a few of the demo images at 32px, output and cache inside tmp_path."""
    copy_captioned(sorted((REPO / "examples" / "demo-data").glob("*.png"))[:images], tmp_path / "data")
    path = tmp_path / name
    path.write_text(f"""
[model]
model_flavour = "i-medium-400m"
pretrained_model_name_or_path = "{model}"

[training]
lora_rank = 4
learning_rate = 1e-2
lr_end = 1e-3
lr_scheduler = "cosine"
train_batch_size = 2
max_train_steps = {steps}
mixed_precision = "no"
resolution = 32
checkpointing_steps = 2
checkpoints_total_limit = 2
caption_dropout_probability = 0.3
seed = 7
{training}

[validation]
validation_resolution = "32,32x48"
validation_prompt = "a red circle on a blue background"
validation_steps = 2
validation_num_inference_steps = 2

[output]
output_dir = "out"

[[datasets]]
id = "shapes"
instance_data_dir = "data"
minimum_image_size = 32
caption_strategy = "textfile"

[[datasets]]
id = "text-embeds"
dataset_type = "text_embeds"
default = true
cache_dir = "cache"
""")
    return path


def prompts_of(tmp_path: Path) -> set[str]:
    """Every prompt a run on write_preset's data caches: captions, the validation prompt, ""."""
    captions = {p.read_text().strip() for p in (tmp_path / "data").glob("*.txt")}
    return captions | {"a red circle on a blue background", ""}


def floydtui(*args: str, check_textual: bool = False) -> subprocess.Popen:
    """`floydtui ARGS` in a fresh interpreter (stdout: events with --json)."""
    code = "import sys; from floydtui.cli import main; rc = main(sys.argv[1:]); "
    code += "print('TEXTUAL_LOADED' if 'textual' in sys.modules else 'TEXTUAL_ABSENT', file=sys.stderr); " \
        if check_textual else ""
    code += "sys.exit(rc)"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLOYDTUI_DEBUG": "1"}
    return spawn([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True, env=env, cwd=REPO)


def lora_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "pytorch_lora_weights.safetensors"))


# ---- a whole run -----------------------------------------------------------------
@pytest.mark.slow
def test_run_end_to_end_directory_events_and_lora_loads(tmp_path, capsys):
    preset = write_preset(tmp_path)
    code, out, err = finish(floydtui("run", str(preset), "--json", check_textual=True))
    assert code == 0, err
    assert "TEXTUAL_ABSENT" in err  # floydtui run never loads Textual
    run = tmp_path / "out"
    stdout_events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert stdout_events == read_events(run / "events.jsonl")

    # The run directory of DESIGN.md section 6.
    assert (run / "preset.toml").is_file() and (run / "README.md").is_file()
    written = load_preset(run / "preset.toml")
    assert Path(written.model["pretrained_model_name_or_path"]).is_absolute() or \
        written.model["pretrained_model_name_or_path"].startswith("builtin:")
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["checkpoint-000002", "checkpoint-000004"]
    pngs = sorted(p.name for p in (run / "validation" / "step-000002").glob("*.png"))
    assert pngs == ["00-a-red-circle-on-a-blue-background-32x32.png", "00-a-red-circle-on-a-blue-background-32x48.png"]
    from PIL import Image
    assert Image.open(run / "validation" / "step-000004" / pngs[1]).size == (32, 48)
    card = (run / "README.md").read_text()
    assert "IFPipeline.from_pretrained" in card and "load_lora_weights" in card and "fixed_small" in card
    assert "tiny" in card  # the builtin model says what it is

    events = read_events(run / "events.jsonl")
    start = next(e for e in events if e["type"] == "run_start")
    assert start["total_steps"] == 4 and start["world_size"] == 1 and start["flavour"] == "i-medium-400m"
    assert "tiny" in start["note"] and Path(start["base_model"]).is_dir()
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3, 4]
    assert all({"epoch", "loss", "lr", "samples_per_s", "eta_s"} <= set(e) for e in steps)
    # Each step reports the rate it trained with: learning_rate first, lr_end last (cosine in between).
    assert steps[0]["lr"] == pytest.approx(1e-2) and steps[-1]["lr"] == pytest.approx(1e-3)
    assert steps[0]["lr"] > steps[1]["lr"] > steps[2]["lr"] > steps[-1]["lr"]
    assert {e["name"] for e in events if e["type"] == "phase"} == {"scan", "embed_cache", "train", "validate", "save"}
    embed = [e for e in events if e["type"] == "progress" and e["phase"] == "embed_cache"]
    assert embed[-1]["done"] == embed[-1]["total"] == len(prompts_of(tmp_path))
    validation = [e for e in events if e["type"] == "validation"]
    assert [v["step"] for v in validation] == [2, 4]
    assert events[-1] == {**events[-1], "type": "run_end", "status": "completed",
                          "lora_path": str(run / "pytorch_lora_weights.safetensors")}
    assert not [e for e in events if e["type"] == "warning" and "no effect" in e["message"]]

    # The LoRA loads with diffusers' own load_lora_weights, every tensor lands, and it changes the image.
    from diffusers import IFPipeline
    from peft.utils import get_peft_model_state_dict

    pipe = IFPipeline.from_pretrained(start["base_model"], safety_checker=None, watermarker=None,
                                      feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def image():
        return pipe("a red circle on a blue background", num_inference_steps=2, height=32, width=32,
                    generator=torch.Generator().manual_seed(0), output_type="pt", clean_caption=False).images

    base = image()
    pipe.load_lora_weights(str(run))
    saved = lora_tensors(run)
    landed = get_peft_model_state_dict(pipe.unet, adapter_name=next(iter(pipe.unet.peft_config)))
    assert len(landed) == len(saved) == 4 * 6 * 2  # 4 attention blocks x 6 target modules x (A, B)
    for key, value in saved.items():
        torch.testing.assert_close(landed[key.removeprefix("unet.")], value)
    assert (image() - base).abs().max() > 1e-4

    # Run again with more steps: it resumes (a warning says so); then a bad setting fails with exit 2. These runs
    # are judged by their events and exit codes, not their bits: in this process, with no start-up to pay.
    from floydtui.cli import main

    assert main(["run", str(preset), "--json", "--max-train-steps", "5"]) == 0, capsys.readouterr().err
    events = read_events(run / "events.jsonl")
    assert any(e["type"] == "warning" and "resuming from checkpoint-000004" in e["message"] for e in events)
    assert [e["step"] for e in events if e["type"] == "step"][-1] == 5
    assert main(["run", str(preset), "--json", "--set", "attention_mechanism=xformers"]) == 2
    events = read_events(run / "events.jsonl")
    assert events[-1]["status"] == "failed" and "xformers" in events[-2]["message"] and events[-2]["hint"]
    assert {e["type"] for e in events} == ALL_EVENTS
    # A checkpoint of other settings is refused before the model and the embed cache load.
    before = len(events)
    assert main(["run", str(preset), "--json", "--set", "lora_rank=8"]) == 2
    events = read_events(run / "events.jsonl")[before:]
    assert "lora_rank" in events[-2]["message"] and events[-1]["status"] == "failed"
    assert not [e for e in events if e["type"] in ("run_start", "phase") and e.get("name") != "scan"]
    # A new learning_rate would be silently ignored by the saved schedule: refused the same way.
    assert main(["run", str(preset), "--json", "--set", "learning_rate=0.5"]) == 2
    assert "learning_rate" in read_events(run / "events.jsonl")[-2]["message"]
    capsys.readouterr()


@pytest.mark.slow
def test_resume_after_sigkill_and_sigterm_ends_with_the_unbroken_lora(tmp_path):
    # Accumulation, LoRA dropout and bf16 optimizer states: each has state a resume must restore.
    training = 'gradient_accumulation_steps = 2\nlora_dropout = 0.1\noptimizer = "adamw_bf16"'
    preset = write_preset(tmp_path, steps=6, training=training)
    # every run in a process of its own: one in pytest's differs in the last bits (2e-5)
    code, _, err = finish(floydtui("run", str(preset), "--output-dir", str(tmp_path / "a"), "--json",
                                   "--set", "validation_steps=0"))
    assert code == 0, err

    args = ("run", str(preset), "--output-dir", str(tmp_path / "b"), "--json", "--set", "validation_steps=0")
    # SIGKILL right after the first checkpoint: nothing gets a chance to clean up.
    proc = floydtui(*args)
    for line in proc.stdout:
        if '"type": "checkpoint"' in line:
            proc.kill()
            break
    proc.wait(timeout=WAIT_S)
    assert proc.returncode == -signal.SIGKILL
    # SIGTERM a step after resuming: a checkpoint, run_end stopped, exit 130.
    proc = floydtui(*args)
    for line in proc.stdout:
        if '"type": "step"' in line:
            proc.send_signal(signal.SIGTERM)
            break
    code, _, err = finish(proc)
    assert code == 130, err
    events = read_events(tmp_path / "b" / "events.jsonl")
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    stopped_at = events[-2]["step"]
    assert events[-2]["type"] == "checkpoint" and stopped_at in (3, 4)  # the step the signal landed in
    code, _, err = finish(floydtui(*args))
    assert code == 0, err
    events = read_events(tmp_path / "b" / "events.jsonl")
    starts = [i for i, e in enumerate(events) if e["type"] == "run_start"]
    first_steps = [next(e["step"] for e in events[i:] if e["type"] == "step") for i in starts]
    assert first_steps == [1, 3, stopped_at + 1]  # each start continues from the newest checkpoint
    a, b = lora_tensors(tmp_path / "a"), lora_tensors(tmp_path / "b")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_two_processes_share_the_work(tmp_path):
    preset = write_preset(tmp_path, steps=2)
    code, out, err = finish(floydtui("run", str(preset), "--json", "--num-processes", "2"))
    assert code == 0, err
    events = read_events(tmp_path / "out" / "events.jsonl")
    assert [e["type"] for e in events].count("run_start") == 1  # only the main process writes
    assert next(e for e in events if e["type"] == "run_start")["world_size"] == 2
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2]
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == len(prompts_of(tmp_path))  # both shares
    assert (tmp_path / "out" / "pytorch_lora_weights.safetensors").is_file()


# ---- the text-embed cache --------------------------------------------------------
@pytest.mark.slow
def test_embed_cache_matches_the_pipeline_and_rebuilds_damaged_entries(tmp_path):
    from diffusers import IFPipeline

    from floydtui.train.embed_cache import TextEmbedCache, build_cache, encoder_identity
    from floydtui.train.models import resolve_model_dir

    folder = resolve_model_dir("builtin:tiny-if-i", stage=1)
    prompts = ["a red circle", "a blue square on a green background", ""]
    cache = TextEmbedCache(tmp_path / "cache", encoder_identity(folder), torch.float32)
    assert build_cache(cache, prompts, folder, placement="auto", batch_size=2)["encoded"] == 3
    pipe = IFPipeline.from_pretrained(folder, safety_checker=None, watermarker=None, feature_extractor=None,
                                      requires_safety_checker=False)
    for prompt in prompts:  # exactly what IFPipeline.encode_prompt gives the UNet, padded rows included
        expected, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device="cpu", clean_caption=False)
        torch.testing.assert_close(cache.get(prompt), expected[0])
    assert build_cache(cache, prompts, folder, placement="auto", batch_size=2)["encoded"] == 0  # reused

    # bf16 entries: half the bytes of a float32 torch.save of the same tensor.
    small = TextEmbedCache(tmp_path / "bf16", cache.encoder_id, torch.bfloat16)
    build_cache(small, prompts[:1], folder, placement="cpu", batch_size=1)
    import io
    buffer = io.BytesIO()
    torch.save(cache.get(prompts[0])[None], buffer)
    assert small.path(prompts[0]).stat().st_size < 0.6 * buffer.tell()

    truncated, altered = cache.path(prompts[0]), cache.path(prompts[1])
    truncated.write_bytes(truncated.read_bytes()[:-100])
    raw = bytearray(altered.read_bytes())
    raw[-5] ^= 0x40  # one flipped bit inside the tensor data
    altered.write_bytes(bytes(raw))

    with EventWriter(tmp_path / "events.jsonl") as events:
        assert build_cache(cache, prompts, folder, placement="cpu", batch_size=2, events=events)["encoded"] == 2
    warnings = [e["message"] for e in read_events(tmp_path / "events.jsonl") if e["type"] == "warning"]
    assert len(warnings) == 2 and "unreadable" in warnings[0] and "hash" in warnings[1]
    fresh = TextEmbedCache(cache.folder, cache.encoder_id, torch.float32)
    for prompt in prompts:
        expected, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device="cpu", clean_caption=False)
        torch.testing.assert_close(fresh.get(prompt), expected[0])
    assert cache.key("x") != TextEmbedCache(cache.folder, "other-encoder", torch.float32).key("x")

    # Entries are written by a thread while the next batch encodes: every batch lands, and progress
    # counts what is written, in order.
    many = [f"a shape number {i}" for i in range(5)]
    overlapped = TextEmbedCache(tmp_path / "overlapped", cache.encoder_id, torch.float32)
    with EventWriter(tmp_path / "events2.jsonl") as events:
        assert build_cache(overlapped, many, folder, placement="cpu", batch_size=2, events=events)["encoded"] == 5
    done = [e["done"] for e in read_events(tmp_path / "events2.jsonl") if e["type"] == "progress"]
    assert done == [0, 2, 4, 5]
    for prompt in many:
        expected, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device="cpu", clean_caption=False)
        torch.testing.assert_close(overlapped.get(prompt), expected[0])


@pytest.mark.slow
def test_unusable_folders_are_refused_up_front_and_a_failed_write_mid_run_says_what(tmp_path, capsys):
    from floydtui.cli import main
    from floydtui.train.embed_cache import TextEmbedCache, encoder_identity
    from floydtui.train.models import resolve_model_dir

    preset = write_preset(tmp_path, steps=2)
    (tmp_path / "blocker").write_text("a file where a folder should go")
    for key, old, new in (("output_dir", 'output_dir = "out"', 'output_dir = "blocker/out"'),
                          ("cache_dir", 'cache_dir = "cache"', 'cache_dir = "blocker/cache"')):
        bad = tmp_path / f"bad-{key}.toml"
        bad.write_text(preset.read_text().replace(old, new))
        code = main(["check", str(bad)])  # in this process: the refusals come before any model loads
        out, _ = capsys.readouterr()
        assert code == 1 and f"{key} = " in out and "blocker is a file" in out, out
        code = main(["run", str(bad)])
        out, err = capsys.readouterr()
        assert code == 2 and f"{key} = " in err and "blocker is a file" in err, err
        assert "internal error" not in err + out and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # nothing was started

    # Mid-run: a file stands where one cache entry's folder goes (as a full disk or a lost permission would
    # stop a write): the run fails with the file and the fix, not as a bug, and its events say so.
    cache = TextEmbedCache(tmp_path / "cache", encoder_identity(resolve_model_dir("builtin:tiny-if-i", stage=1)),
                           torch.float32)
    cache.path("").parent.parent.mkdir(parents=True)
    cache.path("").parent.write_text("in the way")
    code, out, err = finish(floydtui("run", str(preset)))
    assert code == 2 and f"could not write {cache.path('').parent}" in err, err
    assert "internal error" not in err + out and "Traceback" not in err
    end = [e for e in read_events(tmp_path / "out" / "events.jsonl") if e["type"] == "run_end"]
    assert end[-1]["status"] == "failed" and "could not write" in end[-1]["error"]


# ---- model folders -----------------------------------------------------------------
@pytest.mark.slow
def test_model_folders_local_copy_trains_and_bad_folders_say_what_to_do(tmp_path):
    from floydtui.train.models import check_model_dir, resolve_model_dir

    tiny = resolve_model_dir("builtin:tiny-if-i", stage=1)
    assert resolve_model_dir("builtin:tiny-if-i", stage=1) == tiny  # built once
    local = tmp_path / "my-if"
    shutil.copytree(tiny, local)
    assert resolve_model_dir(str(local), stage=1) == local

    with pytest.raises(FloydError) as e:
        resolve_model_dir(str(local), stage=2)
    assert "stage I model" in e.value.problems[0].message and "stage II" in e.value.problems[0].hint
    with pytest.raises(FloydError) as e:
        resolve_model_dir("builtin:tiny-if-ii", stage=1)
    assert "stage II model" in e.value.problems[0].message
    (local / "model_index.json").unlink()
    with pytest.raises(FloydError) as e:
        check_model_dir(local, 1)
    assert "model_index.json" in e.value.problems[0].message and "save_pretrained" in e.value.problems[0].hint
    shutil.copytree(tiny, local, dirs_exist_ok=True)

    # A local folder goes through the same loaders as a downloaded snapshot: a run on it.
    preset = write_preset(tmp_path, steps=1, model=str(local))
    code, _, err = finish(floydtui("run", str(preset), "--json", "--set", "validation_steps=0",
                                   "--set", "checkpointing_steps=0"))
    assert code == 0, err
    start = next(e for e in read_events(tmp_path / "out" / "events.jsonl") if e["type"] == "run_start")
    assert start["base_model"] == str(local) and start["note"] == ""

    # A disk below min_free_disk_mib stops the run before it writes, with the fix.
    code, _, err = finish(floydtui("run", str(preset), "--json", "--output-dir", str(tmp_path / "full"),
                                   "--set", "validation_steps=0", "--set", f"min_free_disk_mib={2**40}"))
    assert code == 2, err
    events = read_events(tmp_path / "full" / "events.jsonl")
    assert events[-1]["status"] == "failed" and "min_free_disk_mib" in events[-2]["message"]
    assert not (tmp_path / "full" / "checkpoints").exists()


@pytest.mark.slow
def test_tiny_model_is_deterministic(tmp_path):
    from floydtui.train.tiny import build_tiny

    build_tiny(1, tmp_path / "a")
    build_tiny(1, tmp_path / "b")
    for rel in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                "tokenizer/tokenizer.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(tmp_path / "a", subfolder="unet")
    assert unet.config.out_channels == 6 and sum(p.numel() for p in unet.parameters()) < 3_000_000


# ---- pieces --------------------------------------------------------------------------
def test_lr_schedules_end_at_lr_end():
    from floydtui.train.optim import lr_factor

    for schedule in ("linear", "cosine", "polynomial"):
        f = [lr_factor(s, schedule=schedule, total=10, warmup=2, lr=1e-3, lr_end=1e-4) for s in range(10)]
        assert f[0] < f[1] < f[2] == pytest.approx(1.0) and f[-1] == pytest.approx(0.1)
    assert lr_factor(5, schedule="constant", total=10, warmup=2, lr=1, lr_end=0.1) == 1.0
    assert lr_factor(0, schedule="constant_with_warmup", total=10, warmup=3, lr=1, lr_end=0.1) == 0.25


def test_adamw_bf16_states_are_bf16_and_track_adamw():
    from floydtui.train.optim import AdamWBF16States

    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(64))
    b = torch.nn.Parameter(a.detach().clone())
    opt_a = torch.optim.AdamW([a], lr=1e-2, weight_decay=1e-2)
    opt_b = AdamWBF16States([b], lr=1e-2, weight_decay=1e-2)
    for _ in range(20):
        for p, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            ((p - 1) ** 2).sum().backward()
            opt.step()
    assert opt_b.state[b]["exp_avg"].dtype == torch.bfloat16 and b.dtype == torch.float32
    assert (a - b).abs().max() < 5e-3 and (a - a.detach().clone()).abs().max() == 0


def test_stop_signal_before_and_during_training():
    from floydtui.train.trainer import StopSignal

    stop = StopSignal()
    stop.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
        stop.armed = True
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop.requested
    finally:
        stop.restore()


@pytest.mark.slow
def test_bitfit_with_lora_trains_in_bf16_and_loads_both_files(tmp_path):
    from floydtui.config.schema import TRAINING_FIELDS
    from floydtui.train.lora import BITFIT_FILE, LORA_FILE, save_lora, setup_trainable
    from floydtui.train.models import load_pipeline, load_unet, resolve_model_dir
    from floydtui.train.sampling import load_lora

    folder = resolve_model_dir("builtin:tiny-if-i", stage=1)
    training = {f.key: f.default for f in TRAINING_FIELDS} | {"lora_rank": 4, "lora_alpha": 4, "use_bitfit": True}
    unet = load_unet(folder, torch.bfloat16)
    params = setup_trainable(unet, training)
    assert all(p.dtype == torch.float32 for p in params)
    assert any(n.endswith("norm1.bias") for n, p in unet.named_parameters() if p.requires_grad)
    x = torch.randn(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # norms with fp32 biases inside a bf16 UNet
        out = unet(x.to(torch.bfloat16), torch.tensor([10]), encoder_hidden_states=torch.randn(1, 77, 64)).sample
    out.float().mean().backward()
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if p.requires_grad and n.endswith(".bias"):
                p.add_(0.5)
    save_lora(tmp_path, unet, 1, training)
    assert (tmp_path / LORA_FILE).is_file() and (tmp_path / BITFIT_FILE).is_file()
    pipe = load_pipeline(folder, 1)
    before = pipe.unet.conv_in.bias.detach().clone()
    assert load_lora(pipe, tmp_path).biases > 0
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / BITFIT_FILE))
    torch.testing.assert_close(pipe.unet.conv_in.bias, saved["conv_in.bias"])
    torch.testing.assert_close(pipe.unet.conv_in.bias, before + 0.5, atol=0.01, rtol=0)  # bf16-rounded base + 0.5


def test_lora_targets_follow_peft_suffix_rule(tmp_path):
    """A target is a module's name or any dotted suffix of it, as peft matches; an absent one says so."""
    from floydtui.config.schema import TRAINING_FIELDS
    from floydtui.errors import FloydError
    from floydtui.train.lora import setup_trainable
    from floydtui.train.models import load_unet, resolve_model_dir

    folder = resolve_model_dir("builtin:tiny-if-i", stage=1)
    training = {f.key: f.default for f in TRAINING_FIELDS} | {"lora_rank": 2, "lora_alpha": 2,
                                                             "lora_target_modules": ["add_embedding.pool.q_proj"]}
    unet = load_unet(folder, torch.float32)
    unet.requires_grad_(False)
    setup_trainable(unet, training)
    adapted = {n.split(".lora_")[0] for n, p in unet.named_parameters() if p.requires_grad}
    assert adapted == {"add_embedding.pool.q_proj"}
    unet = load_unet(folder, torch.float32)
    with pytest.raises(FloydError) as err:
        setup_trainable(unet, training | {"lora_target_modules": ["to_q", "pool.no_such_proj"]})
    assert "['pool.no_such_proj']" in str(err.value) and "lora_target_modules" in str(err.value.problems[0].key)
    # a whole block is a module but no layer peft can wrap: the same clear error, not peft's ValueError
    with pytest.raises(FloydError) as err:
        setup_trainable(unet, training | {"lora_target_modules": ["to_q", "attentions.0"]})
    assert "['attentions.0']" in str(err.value)
