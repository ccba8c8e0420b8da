"""Images from a DeepFloyd IF base model and a LoRA: the engine behind `floydtui generate`.

The guide's inference snippet, done the way it should be: every input checked before weights
load (a LoRA for the other stage or another base fails with the key and both shapes, not with
a size-mismatch traceback halfway through), then `floydtui.train.sampling` does the rest, the
same code validation runs during training: prompts preprocessed as the pipeline does
(`clean_caption`, the run's setting with --run) and encoded by T5 once, T5 freed, stage I
with fixed_small variance, an optional stage II upscale of it (or of a given --image) that
reuses the same prompt embeds. Each PNG gets a JSON sidecar with every setting that made it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from floydtui import __version__
from floydtui.config.flavours import FLAVOURS, GUIDANCE, classify_model, stage_name
from floydtui.errors import FloydError
from floydtui.fsutil import atomic_path, atomic_write_text
from floydtui.train import sampling
from floydtui.train.checkpoint import STATE_FILE
from floydtui.train.lora import LORA_FILE
from floydtui.train.models import IN_CHANNELS

SIZE_MULTIPLE = 8  # IF stage I halves the image three times


@dataclass
class Request:
    """Everything one `generate` call does; flags already resolved to model ids and LoRA files."""

    base: str | None
    prompts: list[str]
    output: Path
    lora: Path | None = None
    negative_prompt: str = ""
    steps: int = sampling.PIPELINE_STEPS
    guidance: float = GUIDANCE[1]  # IFPipeline's own default
    seed: int = 0
    size: tuple[int, int] | None = None  # None: the UNet's native size
    num_images: int = 1
    stage2: str | None = None
    stage2_lora: Path | None = None
    stage2_steps: int = sampling.PIPELINE_STEPS
    stage2_guidance: float = sampling.STAGE2_GUIDANCE
    image: Path | None = None  # upscale this image with stage II alone (no --base)
    clean_caption: bool = True  # the pipeline's caption cleaning; a run's own setting with --run
    revision: str = "main"
    variant: str | None = "auto"
    unet: Path | None = None  # a full fine-tune's UNet folder (a run with model_type = "full")
    stage2_unet: Path | None = None  # likewise for stage II
    run: Path | None = None
    flags: dict[str, str] = field(default_factory=lambda: {
        "base": "--base", "lora": "--lora", "stage2": "--stage2", "stage2_lora": "--stage2-lora"})
    notes: list[str] = field(default_factory=list)  # said before anything loads (where a setting came from)


@dataclass
class Generated:
    """One saved image: the PNG, its sidecar, and the picture for a preview."""

    path: Path
    sidecar: Path
    prompt: str
    seed: int
    stage: int
    width: int
    height: int
    image: Any  # PIL.Image


@dataclass
class RunInfo:
    """What a run directory says about its result."""

    folder: Path
    base: str
    stage: int
    revision: str
    variant: str | None
    lora: Path | None
    unet: Path | None
    clean_caption: bool = True
    # the sampler its validation images used (None without a preset.toml): `generate --run` samples as the
    # monitor showed unless --steps / --guidance say otherwise
    steps: int | None = None
    guidance: float | None = None
    # and its seeds: validation_seed, validation_seed + 1, ... num_validation_images of them
    seed: int | None = None
    num_images: int | None = None


# ---- small parsers --------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """`WxH` (or `N` for N×N) to (width, height); both positive multiples of 8."""
    m = _SIZE.match(text)
    if not m:
        raise FloydError.one(f"--size {text!r} is not WxH", where="--size",
                             hint="give width x height in pixels, e.g. --size 64x64 or --size 96x64")
    w, h = int(m.group(1)), int(m.group(2) or m.group(1))
    bad = [str(v) for v in (w, h) if v <= 0 or v % SIZE_MULTIPLE]
    if bad:
        near = "x".join(str(max(SIZE_MULTIPLE, round(v / SIZE_MULTIPLE) * SIZE_MULTIPLE)) for v in (w, h))
        raise FloydError.one(f"--size {w}x{h}: {', '.join(bad)} is not a positive multiple of {SIZE_MULTIPLE}",
                             where="--size", hint=f"IF's UNet halves the image three times; try --size {near}")
    return w, h


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- where a LoRA comes from ----------------------------------------------------------

def find_lora_file(path: str | Path, flag: str = "--lora") -> Path:
    """A LoRA .safetensors file, given the file or a folder holding pytorch_lora_weights.safetensors."""
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / LORA_FILE).is_file():
            return (p / LORA_FILE).resolve()
        if (p / STATE_FILE).is_file():
            raise FloydError.one(f"{p} is a training checkpoint without a LoRA file (written by an older floydtui, "
                                 "or of a full fine-tune)", where=flag,
                                 hint="generate from the finished run (--run RUN_DIR); an unfinished run continues "
                                      "from its newest checkpoint with `floydtui run RUN_DIR/preset.toml`")
        others = sorted(q.name for q in p.glob("*.safetensors"))
        hint = (f"pass the file itself, e.g. {flag} {p / others[0]}" if others else
                "pass a finished run directory or the .safetensors file itself")
        raise FloydError.one(f"{p} holds no {LORA_FILE}", where=flag, hint=hint)
    if not p.is_file():
        raise FloydError.one(f"no such LoRA file: {p}", where=flag,
                             hint="check the path; a run writes its LoRA to OUTPUT_DIR/" + LORA_FILE)
    if p.suffix != ".safetensors":
        raise FloydError.one(f"{p} is not a .safetensors file", where=flag,
                             hint="floydtui loads LoRAs in diffusers' safetensors format "
                                  "(pytorch_lora_weights.safetensors)")
    return p.resolve()


def read_run(run_dir: str | Path) -> RunInfo:
    """The base model, stage and final LoRA of a run directory; FloydError when it has none yet."""
    from floydtui.events import read_events

    folder = Path(run_dir).expanduser().resolve()
    if not folder.is_dir():
        raise FloydError.one(f"no such run directory: {folder}", where="--run",
                             hint="pass the output_dir of a `floydtui run` (it holds preset.toml and events.jsonl)")
    events = read_events(folder / "events.jsonl") if (folder / "events.jsonl").is_file() else []
    if (folder / "preset.toml").is_file():
        from floydtui.config.preset import load_preset

        preset = load_preset(folder / "preset.toml")
        base, stage = preset.base_model, preset.stage
        revision, variant = preset.model["revision"], preset.model["variant"]
        clean_caption = preset.training["clean_caption"]
        v = preset.validation
        sampler = (v["validation_num_inference_steps"], float(v["validation_guidance"]), v["validation_seed"],
                   v["num_validation_images"])
    else:
        start = next((e for e in events if e.get("type") == "run_start"), None)
        if start is None:
            raise FloydError.one(f"{folder} is not a floydtui run directory: no preset.toml and no run_start "
                                 "in events.jsonl", where="--run",
                                 hint="pass the output_dir of a `floydtui run`, or use --base and --lora")
        base = start.get("model_id") or start["base_model"]
        stage, revision, variant = FLAVOURS[start["flavour"]].stage, "main", "auto"
        clean_caption, sampler = True, (None, None, None, None)
    lora = folder / LORA_FILE
    unet = folder / "unet"
    if lora.is_file():
        return RunInfo(folder, base, stage, revision, variant, lora, None, clean_caption, *sampler)
    if (unet / "config.json").is_file():
        return RunInfo(folder, base, stage, revision, variant, None, unet, clean_caption, *sampler)
    end = next((e for e in reversed(events) if e.get("type") == "run_end"), None)
    if end is None:
        state = "is still running or was interrupted"
    elif end.get("status") == "failed":
        state = f"failed ({end.get('error', 'see events.jsonl')})"
    else:
        state = f"ended as {end.get('status')!r}"
    raise FloydError.one(f"the run in {folder} {state}: it has no LoRA yet ({LORA_FILE} is missing)", where="--run",
                         hint=f"wait for it to finish (`floydtui watch {folder}`), or finish it with "
                              f"`floydtui run {folder / 'preset.toml'}` (it resumes from the newest checkpoint)")


def lora_origin(lora: Path) -> tuple[int | None, str | None]:
    """(stage, base model) of a LoRA: from its file's floydtui metadata, else from the run it sits in.

    (None, None) when neither says; a bare file written by floydtui carries both in its header.
    """
    from floydtui.events import read_events
    from floydtui.train.lora import lora_file_metadata

    try:
        meta = lora_file_metadata(lora)
    except Exception:  # not a readable safetensors file: check_lora reports that in its own words
        meta = {}
    if meta.get("floydtui_stage") in ("1", "2"):
        return int(meta["floydtui_stage"]), meta.get("base_model") or None
    folder = lora.parent
    if (folder / "preset.toml").is_file():
        from floydtui.config.preset import load_preset

        try:
            preset = load_preset(folder / "preset.toml")
        except FloydError:  # a hint source only: an unreadable preset leaves the shape check to decide
            return None, None
        return preset.stage, preset.base_model
    if (folder / "events.jsonl").is_file():
        for e in read_events(folder / "events.jsonl"):
            if e.get("type") == "run_start" and e.get("flavour") in FLAVOURS:
                return FLAVOURS[e["flavour"]].stage, e.get("model_id") or e.get("base_model")
    return None, None


def recorded_clean_caption(lora: Path | None) -> bool:
    """The clean_caption a LoRA was trained with, from its header (floydtui writes it); True (the pipeline's
    default) for a LoRA without one."""
    from floydtui.train.lora import lora_file_metadata

    if lora is None:
        return True
    try:
        return lora_file_metadata(lora).get("clean_caption", "true") != "false"
    except Exception:  # not a readable safetensors file: check_lora reports that in its own words
        return True


# ---- checks before anything heavy loads -----------------------------------------------

def check_model_stage(model_id: str, stage: int, flag: str) -> None:
    """Refuse a model of the other stage early, in generate's words (a stage II model under --base)."""
    found = classify_model(model_id).stage
    local = Path(model_id).expanduser() / "unet" / "config.json"
    if found is None and local.is_file():
        found = IN_CHANNELS.get(json.loads(local.read_text()).get("in_channels"))
    if found is None or found == stage:
        return
    if stage == 1:
        hint = f"a stage II model upscales: pass it as --stage2 {model_id}, and a stage I model as --base"
    else:
        hint = f"--stage2 takes a stage II model (DeepFloyd/IF-II-M-v1.0, builtin:shapes-if-ii); {model_id} goes " \
               "under --base"
    raise FloydError.one(f"{model_id} is a {stage_name(found)} model, but {flag} needs a {stage_name(stage)} model",
                         where=flag, hint=hint)


def resolve_model(model_id: str, stage: int, flag: str, revision: str = "main", variant: str | None = "auto"):
    """The model's local folder (builtin built, hub id fetched); problems name the flag."""
    import dataclasses

    from floydtui.train.models import resolve_model_dir

    check_model_stage(model_id, stage, flag)
    try:
        return resolve_model_dir(model_id, stage=stage, revision=revision, variant=variant)
    except FloydError as e:
        raise FloydError([dataclasses.replace(p, where=flag, key="") for p in e.problems]) from None


def meta_unet(folder: Path):
    """The folder's UNet built on the meta device: every module and shape, no weights, no memory."""
    import torch
    from diffusers import UNet2DConditionModel

    config = UNet2DConditionModel.load_config(folder / "unet")
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


_LORA_KEY = re.compile(r"^(?P<module>.+?)\.(?P<part>lora_A\.weight|lora\.down\.weight|lora_B\.weight|"
                       r"lora\.up\.weight|lora_B\.bias|lora_magnitude_vector|alpha)$")


def _expected_shape(module, part: str, found: list[int]) -> list[int] | None:
    """The shape `part` must have on `module`, the rank taken from the file; None where no LoRA fits."""
    import math

    import torch

    if isinstance(module, torch.nn.Linear):
        n_in, n_out, kernel = module.in_features, module.out_features, []
    elif isinstance(module, torch.nn.Conv2d):
        n_in, n_out, kernel = module.in_channels, module.out_channels, list(module.kernel_size)
    else:
        return None
    if part in ("lora_A.weight", "lora.down.weight"):
        return [found[0], n_in, *kernel]
    if part in ("lora_B.weight", "lora.up.weight"):
        return [n_out, found[1] if len(found) > 1 else 0, *([1, 1] if kernel else [])]
    if part == "alpha":
        return found
    # a DoRA magnitude or a LoRA bias: one value per output ([out] on Linear, [1, out, 1, 1] on Conv2d)
    return found if math.prod(found) == n_out else [n_out]


def check_lora(lora: Path, unet, *, stage: int, model_id: str, flag: str) -> list[str]:
    """Refuse a LoRA whose UNet keys or shapes do not fit `unet`, naming the first bad key and both shapes.

    Reads only the safetensors header, so a wrong file fails in a second, before any weights load.
    Returns warnings: a LoRA that fits but whose run trained on another base model.
    """
    from safetensors import safe_open

    origin_stage, origin_base = lora_origin(lora)
    if origin_stage is not None and origin_stage != stage:
        other = "--stage2-lora (with --stage2 MODEL)" if origin_stage == 2 else "--lora (with a stage I --base)"
        raise FloydError.one(f"{lora} is a {stage_name(origin_stage)} LoRA (its run trained "
                             f"{stage_name(origin_stage)}), but {flag} is for the {stage_name(stage)} "
                             f"model {model_id}", where=flag, hint=f"pass it as {other}")
    try:
        with safe_open(str(lora), framework="pt") as f:
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a file that is not one
        raise FloydError.one(f"{lora} is not a readable safetensors file: {e}", where=flag,
                             hint="pass the pytorch_lora_weights.safetensors a run wrote") from None
    modules = dict(unet.named_modules())
    unet_keys = {k[len("unet."):]: v for k, v in shapes.items() if k.startswith("unet.")}
    if not unet_keys:
        raise FloydError.one(f"{lora} has no UNet LoRA weights (no key starts with 'unet.'; "
                             f"found e.g. {next(iter(shapes), 'nothing')!r})", where=flag,
                             hint="pass a diffusers-format DeepFloyd IF LoRA, as `floydtui run` or "
                                  "IFPipeline.save_lora_weights writes it")
    bad: list[str] = []
    for key, found in sorted(unet_keys.items()):
        m = _LORA_KEY.match(key)
        if not m:
            bad.append(f"'unet.{key}' is not a LoRA weight floydtui knows (lora_A/lora_B/lora.down/lora.up)")
            continue
        name = m.group("module")
        module = modules.get(name)
        if module is None:
            bad.append(f"'unet.{key}' is for a module {model_id}'s UNet does not have ({name})")
            continue
        expected = _expected_shape(module, m.group("part"), found)
        if expected is None:
            bad.append(f"'unet.{key}' targets {name}, a {type(module).__name__}, which takes no LoRA")
        elif expected != found:
            bad.append(f"'unet.{key}' has shape {found}, but {model_id}'s {name} needs {expected}")
    if bad:
        more = f" (and {len(bad) - 1} more mismatching key{'s' * (len(bad) > 2)})" if len(bad) > 1 else ""
        if stage == 1:
            hint = ("this LoRA was trained on another base model or is a stage II LoRA: pass the base it was "
                    "trained on with --base (its run's preset.toml says which), or give a stage II LoRA as "
                    "--stage2-lora")
        else:
            hint = ("this LoRA was trained on another stage II model or is a stage I LoRA: pass the model it was "
                    "trained on with --stage2, or give a stage I LoRA as --lora")
        raise FloydError.one(f"{lora} does not fit {model_id}: {bad[0]}{more}", where=flag, hint=hint)
    if origin_base and not _same_model(origin_base, model_id):
        return [f"{flag} {lora} was trained on {origin_base}; generating with {model_id} (the shapes fit, "
                "the result may not look like the run's validation images)"]
    return []


def _same_model(a: str, b: str) -> bool:
    """Two model ids name the same model: equal ids, or the same local folder (a builtin id counts as its folder)."""
    from floydtui.config.flavours import BUILTIN_MODELS
    from floydtui.train.tiny import builtin_model_dir

    def folder(model_id: str) -> Path | None:
        p = builtin_model_dir(model_id) if model_id in BUILTIN_MODELS else Path(model_id).expanduser()
        return p.resolve() if p.exists() else None

    return a == b or (folder(a) is not None and folder(a) == folder(b))


def check_text_width(folder1: Path, unet2, stage2_id: str) -> None:
    """Stage II reuses stage I's prompt embeds: its UNet must take the width of stage I's text encoder."""
    width = json.loads((folder1 / "text_encoder" / "config.json").read_text()).get("d_model")
    takes = unet2.config.encoder_hid_dim
    if width and takes and width != takes:
        raise FloydError.one(f"{stage2_id} takes text embeds of width {takes}, but the base model's text encoder "
                             f"gives {width}", where="--stage2",
                             hint="use the stage II model of the same family as --base (every DeepFloyd IF stage "
                                  "uses T5 v1.1 XXL; builtin:shapes-if-i goes with builtin:shapes-if-ii)")


# ---- the run ---------------------------------------------------------------------------

def _device_and_dtype():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.float16
    return torch.device("cpu"), torch.float32


def _release(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _names(prompts: list[str]) -> dict[str, str]:
    """A distinct file-name slug per prompt; prompts that slug alike get a short hash of their text."""
    slugs = [sampling.slug(p) for p in prompts]
    return {p: s if slugs.count(s) == 1 else f"{s}-{hashlib.sha1(p.encode()).hexdigest()[:6]}"
            for p, s in zip(prompts, slugs)}


def _full_unet(folder: Path | None, dtype):
    """A full fine-tune's UNet to use instead of the model's own; None when there is none."""
    if folder is None:
        return None
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder, torch_dtype=dtype)


def _lora_record(path: Path | None) -> dict[str, str] | None:
    return {"path": str(path), "sha256": file_sha256(path)} if path else None


def _save(image, sidecar: dict[str, Any], path: Path) -> Path:
    """The PNG and its JSON sidecar, both written atomically."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    side = path.with_suffix(".json")
    atomic_write_text(side, json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n")
    return side


def load_lora_fully(pipe, lora: Path, flag: str) -> str:
    """sampling.load_lora, refusing a LoRA whose tensors did not all land; returns what landed, in words."""
    loaded = sampling.load_lora(pipe, lora)
    if not loaded.complete:
        raise FloydError.one(f"diffusers placed {loaded.landed} of the {loaded.saved} LoRA tensors in {lora}",
                             where=flag,
                             hint="this is a bug in floydtui or diffusers: please report it with the LoRA file")
    return f"{loaded.modules} modules adapted ({loaded.landed} tensors)"


def read_image(path: Path, flag: str = "--image"):
    """The stage II input image (--image) as [1, 3, h, w] in [-1, 1]; FloydError when it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return sampling.from_pil(im)
    except (OSError, UnidentifiedImageError) as e:
        raise FloydError.one(f"{path} is not an image floydtui can read ({e})", where=flag,
                             hint="give a PNG or JPEG, e.g. a stage I image floydtui generate saved") from None


def generate(req: Request, on_image: Callable[[Generated], None] | None = None,
             say: Callable[[str], None] | None = None) -> list[Generated]:
    """Run stage I (and stage II when asked) for every prompt and seed; save and report each image.

    Every input is checked before weights load: both models' stages, both LoRAs' keys and
    shapes, the size. Seeds run seed, seed+1, ... per prompt, one image per pipeline call,
    so an image depends only on its own prompt, seed and settings. With `req.image`, stage I
    is skipped and stage II upscales that image.
    """
    from floydtui.train.embed_cache import encoder_dtype
    from floydtui.train.models import builtin_note, load_pipeline, resolve_text_encoder_dir

    say = say or (lambda _msg: None)
    for note in req.notes:
        say(note)
    flags = req.flags
    started = time.time()
    warnings: list[str] = []
    folder1 = unet1 = folder2 = unet2 = source = None
    if req.base:
        folder1 = resolve_model(req.base, 1, flags["base"], req.revision, req.variant)
        unet1 = meta_unet(folder1)
        if req.lora:
            warnings += check_lora(req.lora, unet1, stage=1, model_id=req.base, flag=flags["lora"])
    if req.stage2:
        folder2 = resolve_model(req.stage2, 2, flags["stage2"])
        unet2 = meta_unet(folder2)
        if folder1:
            check_text_width(folder1, unet2, req.stage2)
        if req.stage2_lora:
            warnings += check_lora(req.stage2_lora, unet2, stage=2, model_id=req.stage2, flag=flags["stage2_lora"])
    if req.image:
        source = read_image(req.image)
        width, height = source.shape[-1], source.shape[-2]
    else:
        width, height = req.size or (unet1.config.sample_size, unet1.config.sample_size)
    for model_id in (req.base, req.stage2):
        if model_id and builtin_note(model_id):
            say(builtin_note(model_id))
    for warning in warnings:
        say(f"warning: {warning}")

    device, dtype = _device_and_dtype()
    prompts = list(dict.fromkeys(req.prompts))
    text_dir = (resolve_text_encoder_dir(req.base, folder1, stage=1, revision=req.revision, variant=req.variant)
                if req.base else resolve_text_encoder_dir(req.stage2, folder2, stage=2))
    say(f"encoding {len(prompts)} prompt(s) with {text_dir.name}'s T5 (clean_caption = "
        f"{str(req.clean_caption).lower()})")
    t5_device = "gpu" if device.type == "cuda" else "cpu"
    embeds = sampling.encode_with_t5(text_dir, [*prompts, req.negative_prompt], clean_caption=req.clean_caption,
                                     device=device, dtype=encoder_dtype(t5_device),
                                     variant=req.variant if req.base else "auto")
    _release(device)
    negative = embeds[req.negative_prompt]

    settings: dict[str, Any] = {
        "floydtui_version": __version__,
        "base": req.base, "base_folder": str(folder1) if folder1 else None,
        "base_note": builtin_note(req.base) if req.base else "", "revision": req.revision,
        "lora": _lora_record(req.lora), "unet": str(req.unet) if req.unet else None,
        "run": str(req.run) if req.run else None, "image": str(req.image) if req.image else None,
        "negative_prompt": req.negative_prompt, "steps": req.steps, "guidance": req.guidance,
        "size": [width, height], "scheduler": {"class": "DDPMScheduler", "variance_type": "fixed_small"},
        "clean_caption": req.clean_caption, "device": device.type, "dtype": str(dtype).removeprefix("torch."),
        "text_encoder_freed": True,
        "stage2": None,
    }
    if req.stage2:
        settings["stage2"] = {"model": req.stage2, "model_folder": str(folder2), "note": builtin_note(req.stage2),
                              "lora": _lora_record(req.stage2_lora),
                              "unet": str(req.stage2_unet) if req.stage2_unet else None,
                              "steps": req.stage2_steps, "guidance": req.stage2_guidance,
                              "noise_level": sampling.STAGE2_NOISE_LEVEL,
                              "size": [width * sampling.UPSCALE, height * sampling.UPSCALE]}
    names = _names(prompts)
    jobs = [(prompt, req.seed + i) for prompt in prompts for i in range(req.num_images)]
    out: list[Generated] = []
    stage1: dict[tuple[str, int], Any] = {}

    def keep(image, prompt: str, seed: int, stage: int, suffix: str, extra: dict[str, Any]) -> None:
        pil = sampling.to_pil(image)
        path = req.output / f"{seed}-{names[prompt]}{suffix}.png"
        sidecar = {"file": path.name, "stage": stage, "prompt": prompt, "seed": seed,
                   "width": pil.width, "height": pil.height, **extra, **settings}
        side = _save(pil, sidecar, path)
        item = Generated(path, side, prompt, seed, stage, pil.width, pil.height, pil)
        out.append(item)
        if on_image:
            on_image(item)

    if req.base:
        say(f"loading {req.base} (stage I) on {device.type}")
        pipe = load_pipeline(folder1, 1, unet=_full_unet(req.unet, dtype), dtype=dtype, variant=req.variant)
        if req.lora:
            say(f"LoRA {req.lora}: {load_lora_fully(pipe, req.lora, flags['lora'])}")
        pipe.to(device)
        say(f"stage I: {len(jobs)} image(s) at {width}x{height}, {req.steps} steps")
        for prompt, seed in jobs:
            image = sampling.sample_stage1(pipe, embeds[prompt], negative, width=width, height=height,
                                           steps=req.steps, guidance=req.guidance, seed=seed)
            stage1[(prompt, seed)] = image
            keep(image, prompt, seed, 1, "", {})
        del pipe
        _release(device)

    if req.stage2:
        say(f"loading {req.stage2} (stage II)")
        pipe2 = load_pipeline(folder2, 2, unet=_full_unet(req.stage2_unet, dtype), dtype=dtype, variant="auto")
        if req.stage2_lora:
            say(f"stage II LoRA {req.stage2_lora}: "
                f"{load_lora_fully(pipe2, req.stage2_lora, flags['stage2_lora'])}")
        pipe2.to(device)
        say(f"stage II: {len(jobs)} image(s) at {width * sampling.UPSCALE}x{height * sampling.UPSCALE}, "
            f"{req.stage2_steps} steps")
        for prompt, seed in jobs:
            small = source if source is not None else stage1[(prompt, seed)]
            image = sampling.upscale(pipe2, small, embeds[prompt], negative, steps=req.stage2_steps,
                                     guidance=req.stage2_guidance, seed=seed)
            extra = {"stage1_file": None if source is not None else f"{seed}-{names[prompt]}.png"}
            keep(image, prompt, seed, 2, "-stage2", extra)
        del pipe2
        _release(device)
    say(f"{len(out)} image(s) in {time.time() - started:.1f}s")
    return out
