"""What a LoRA is trained on is what inference feeds it (issue 13).

The embed cache holds what diffusers' IFPipeline.encode_prompt makes of a caption for either
`clean_caption`; a validation image is what `floydtui generate` makes from that step's
checkpoint; a changed `clean_caption` never reuses old cache entries; long captions are named.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from floydtui.cli import main
from floydtui.events import read_events

from test_stage2 import write_stage2_preset
from test_train import write_preset

REPO = Path(__file__).resolve().parents[1]

LONG = " ".join(["a small red circle drawn on a large blue background"] * 12)  # ~120 T5 tokens
CAPTIONS = [
    "A Red Circle on a Blue Background",
    "  a green square, trailing spaces   ",
    "a blue triangle http://example.com/shapes/triangle.png by SomeOne",
    "<b>a yellow</b> <i>star</i> &amp; a moon",
    "\u201ca purple hexagon\u201d \u2014 it\u2019s \u2018shiny\u2019",
    LONG,
]


@pytest.fixture(scope="module")
def tiny_i():
    from floydtui.train.models import resolve_model_dir

    return resolve_model_dir("builtin:tiny-if-i", stage=1)


@pytest.mark.slow
@pytest.mark.parametrize("clean_caption", [False, True])
def test_cache_entries_are_the_pipelines_encode_prompt(tmp_path, tiny_i, clean_caption):
    from diffusers import IFPipeline
    from diffusers.utils import is_bs4_available, is_ftfy_available

    from floydtui.train.embed_cache import TextEmbedCache, build_cache, encoder_identity
    from floydtui.config.flavours import TEXT_MAX_LENGTH
    from floydtui.train.sampling import token_counts

    if clean_caption and not (is_bs4_available() and is_ftfy_available()):
        pytest.skip("beautifulsoup4 or ftfy missing: `pip install -e .` installs both (pyproject dependencies)")
    cache = TextEmbedCache(tmp_path / "cache", encoder_identity(tiny_i), torch.float32, clean_caption=clean_caption)
    # One prompt per T5 call, as encode_prompt(caption) runs it: batches change only float rounding (bench/RESULTS.md).
    assert build_cache(cache, CAPTIONS, tiny_i, placement="cpu", batch_size=1)["encoded"] == len(CAPTIONS)
    pipe = IFPipeline.from_pretrained(tiny_i, safety_checker=None, watermarker=None, feature_extractor=None,
                                      requires_safety_checker=False)
    for caption in CAPTIONS:
        expected, _ = pipe.encode_prompt(caption, do_classifier_free_guidance=False, device="cpu",
                                         clean_caption=clean_caption)
        assert torch.equal(cache.get(caption), expected[0]), caption
    # The pipeline's preprocessing matters: the text as written encodes to something else.
    raw = pipe.text_encoder(**{k: v for k, v in pipe.tokenizer(
        CAPTIONS[0], padding="max_length", max_length=TEXT_MAX_LENGTH, truncation=True, return_tensors="pt").items()})[0]
    assert (raw[0] - cache.get(CAPTIONS[0])).abs().max() > 0.1
    assert token_counts(pipe.tokenizer, [LONG], clean_caption)[0] > TEXT_MAX_LENGTH


@pytest.mark.slow
def test_a_changed_clean_caption_rebuilds_the_cache_entries(tmp_path, tiny_i):
    from diffusers import IFPipeline

    from floydtui.train.embed_cache import TextEmbedCache, encoder_identity

    preset = write_preset(tmp_path, steps=1)
    preset.write_text(preset.read_text().replace('validation_prompt = "a red circle on a blue background"',
                                                 'validation_prompt = "A Red Circle on a Blue Background"'))

    def run(*flags) -> list[dict]:
        log = tmp_path / "out" / "events.jsonl"
        before = len(read_events(log)) if log.is_file() else 0
        assert main(["run", str(preset), "--json", "--resume", "none", *flags]) == 0
        return [e for e in read_events(log)[before:] if e.get("phase") == "embed_cache"]

    first = run()
    total = first[-1]["total"]
    assert first[0]["done"] == 0 and first[-1]["done"] == total  # every prompt encoded
    again = run()
    assert again[0]["done"] == total  # the same setting reuses them all
    changed = run("--set", "clean_caption=false")
    assert changed[0]["done"] == 0 and changed[-1]["done"] == total  # none reused: all encoded again
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 2 * total

    pipe = IFPipeline.from_pretrained(tiny_i, safety_checker=None, watermarker=None, feature_extractor=None,
                                      requires_safety_checker=False)
    prompt = "A Red Circle on a Blue Background"
    for clean in (True, False):
        cache = TextEmbedCache(tmp_path / "cache", encoder_identity(tiny_i), torch.float32, clean_caption=clean)
        expected, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device="cpu", clean_caption=clean)
        assert torch.equal(cache.get(prompt), expected[0])


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.slow
def test_a_stage_one_validation_image_is_what_generate_makes_from_that_checkpoint(tmp_path, capsys):
    """Each of a run's validation images (two seeds: num_validation_images = 2) is what `generate` makes with that
    seed from the checkpoint of that step."""
    preset = write_preset(tmp_path, steps=4, training="embed_batch_size = 1")
    text = preset.read_text().replace('validation_prompt = "a red circle on a blue background"',
                                      'validation_prompt = "A Red Circle <b>on</b> a Blue Background!"\n'
                                      'validation_negative_prompt = "Blurry, Low Quality"\n'
                                      "validation_guidance = 5.5\nvalidation_seed = 11\nnum_validation_images = 2")
    preset.write_text(text)
    assert main(["run", str(preset), "--json"]) == 0
    run = tmp_path / "out"
    step2 = next(e for e in read_events(run / "events.jsonl") if e["type"] == "validation" and e["step"] == 2)
    images = {i["seed"]: i for i in step2["images"] if (i["width"], i["height"]) == (32, 48)}
    assert sorted(images) == [11, 12] and all(f"-seed{s}-32x48.png" in i["path"] for s, i in images.items())
    prompt = images[11]["prompt"]
    checkpoint = run / "checkpoints" / "checkpoint-000002"
    assert (checkpoint / "pytorch_lora_weights.safetensors").is_file()

    def generate(lora: Path, out: Path) -> dict[int, np.ndarray]:
        assert main(["generate", "--base", "builtin:tiny-if-i", "--lora", str(lora), "--prompt", prompt,
                     "--negative-prompt", "Blurry, Low Quality", "--size", "32x48", "--steps", "2",
                     "--guidance", "5.5", "--seed", "11", "--num-images", "2", "--no-preview", "-o", str(out)]) == 0
        made = {seed: next(out.glob(f"{seed}-*.png")) for seed in (11, 12)}
        assert all(json.loads(m.with_suffix(".json").read_text())["clean_caption"] is True  # from the LoRA's header
                   for m in made.values())
        return {seed: _pixels(m) for seed, m in made.items()}

    generated = generate(checkpoint, tmp_path / "gen")
    for seed, image in images.items():
        assert np.array_equal(generated[seed], _pixels(Path(image["path"]))), seed
    assert not np.array_equal(generated[11], generated[12])  # two seeds, two images
    # The step-4 LoRA is another model: the comparison can fail.
    assert not np.array_equal(generate(run / "checkpoints" / "checkpoint-000004", tmp_path / "gen4")[11],
                              _pixels(Path(images[11]["path"])))
    capsys.readouterr()


@pytest.mark.slow
def test_a_stage_two_validation_image_is_what_generate_upscales_from_that_checkpoint(tmp_path, capsys):
    preset = write_stage2_preset(tmp_path, training="embed_batch_size = 1")
    assert main(["run", str(preset), "--json"]) == 0
    run = tmp_path / "out"
    step2 = next(e for e in read_events(run / "events.jsonl") if e["type"] == "validation" and e["step"] == 2)
    image = step2["images"][0]
    assert (image["width"], image["height"]) == (256, 256)
    shown = _pixels(Path(image["path"]))  # input | output | original, each 256 wide
    small = shown[::4, 0:256:4]  # the input panel is the 64px input enlarged 4x with nearest pixels
    Image.fromarray(small).save(tmp_path / "input.png")

    assert main(["generate", "--stage2", "builtin:tiny-if-ii", "--stage2-lora", str(run / "checkpoints" /
                 "checkpoint-000002"), "--image", str(tmp_path / "input.png"), "--prompt", image["prompt"],
                 "--stage2-steps", "2", "--stage2-guidance", "4", "--seed", "0", "--no-preview",
                 "-o", str(tmp_path / "gen")]) == 0
    made = next((tmp_path / "gen").glob("0-*-stage2.png"))
    assert np.array_equal(_pixels(made), shown[:, 256:512])
    capsys.readouterr()


def test_long_captions_are_counted_and_named_by_check_and_scan(tmp_path):
    from helpers import copy_captioned

    data = copy_captioned(sorted((REPO / "examples" / "demo-data").glob("*.png"))[:6], tmp_path / "data")
    for name in sorted(p.name for p in data.glob("*.txt"))[:4]:
        (data / name).write_text(LONG)
    preset = write_preset(tmp_path, images=6)
    check = subprocess.run([sys.executable, "-m", "floydtui", "check", str(preset)], capture_output=True, text=True,
                           timeout=600)
    assert "4 of 6 captions are longer than 77 T5 tokens (the tokenizer of builtin:tiny-if-i)" in check.stdout
    long_files = sorted(p.with_suffix(".png").name for p in data.glob("*.txt") if p.read_text() == LONG)
    assert all(f"{f} (" in check.stdout for f in long_files[:3]) and ", ..." in check.stdout
    assert "captions: " in check.stdout and "T5 tokens at most, 4 over 77" in check.stdout
    scan = subprocess.run([sys.executable, "-m", "floydtui", "scan", str(preset)], capture_output=True, text=True,
                          timeout=600)
    assert "4 of 6 captions are longer than 77 T5 tokens" in scan.stderr


@pytest.mark.slow
def test_run_emits_the_long_caption_warning(tmp_path):
    from helpers import copy_captioned

    data = copy_captioned(sorted((REPO / "examples" / "demo-data").glob("*.png"))[:4], tmp_path / "data")
    (data / sorted(p.name for p in data.glob("*.txt"))[0]).write_text(LONG)
    preset = write_preset(tmp_path, images=4, steps=1)
    assert main(["run", str(preset), "--json"]) == 0
    warnings = [e["message"] for e in read_events(tmp_path / "out" / "events.jsonl") if e["type"] == "warning"]
    assert any("1 of 4 captions are longer than 77 T5 tokens" in w for w in warnings), warnings


def test_an_estimate_is_labelled_when_no_tokenizer_is_on_disk():
    from floydtui.train.caption_length import count_tokens, long_caption_problem

    tokens = count_tokens({"a.png": LONG, "b.png": "a red circle"}, None, "DeepFloyd/IF-I-XL-v1.0 is not "
                          "downloaded yet", clean_caption=False)
    assert tokens.estimated and tokens.counts["b.png"] < 10 and tokens.counts["a.png"] > 77
    problem = long_caption_problem(tokens, "shapes")
    assert "1 of 2 captions" in problem.message and "estimated from the words" in problem.message
    assert "a.png (about " in problem.message and not problem.is_error
