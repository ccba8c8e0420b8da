"""The training run: scan, embed cache, the loop, checkpoints, validation, the LoRA.

`setup()` builds everything into a `Run` (data, models, embed cache, optimizer, position);
`_train` is then a short loop over `train_step(run, ...)`, whose step fits on one screen
(batch, noise, timesteps, forward, loss, backward, step); `save_checkpoint(run)`,
`validate(run)` and the events are called from the loop, not woven into it.

Randomness is per step: noise, timesteps, caption dropout and LoRA dropout come from a
generator seeded by (seed, step, micro-batch, rank), and the data order from (seed, epoch).
A run resumed from a checkpoint therefore replays exactly what an unbroken run would do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from floydtui.config.preset import Preset
from floydtui.errors import FloydError
from floydtui.events import EventWriter
from floydtui.fsutil import atomic_write_text
from floydtui.hub import DiskGuard
from floydtui.paths import cache_root
from floydtui.train import checkpoint as ckpt
from floydtui.train import control
from floydtui.train.card import model_card
from floydtui.train.distributed import cache_share, fillers_first, from_main, shared_folders
from floydtui.train.embed_cache import TextEmbedCache, build_cache, encoder_identity
from floydtui.train.inputs import Stage2Inputs, StageInputs, stage1_inputs, timestep_bias_weights
from floydtui.train.lora import load_trainable_state_dict, save_lora, setup_trainable, trainable_state_dict
from floydtui.train.models import (builtin_note, load_image_noising_scheduler, load_noise_scheduler, load_pipeline,
                                   load_unet, model_label, resolve_model_dir, resolve_text_encoder_dir)
from floydtui.train.optim import make_lr_scheduler, make_optimizer
from floydtui.train.validation import NO_EFFECT_ATOL, load_check, run_stage2_validation, run_validation

WEIGHT_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ---- what the UNet is fed ------------------------------------------------------------

def run_pid() -> int:
    """The pid a watcher signals to stop this run: the `floydtui run` the user started.

    Under accelerate's launcher that is the relaunching parent; its process group holds the
    launcher and every rank, so a SIGINT to the group stops them all with a checkpoint.
    """
    return int(os.environ.get("FLOYDTUI_RUN_PID") or os.getpid())

def input_builder(preset: Preset, model_dir: Path,
                  noise_scheduler) -> Callable[[torch.Tensor, Any, torch.Generator], StageInputs]:
    """The function that turns clean pixels into UNet inputs for the preset's stage (and timestep bias)."""
    weights = timestep_bias_weights(preset.training, noise_scheduler.config.num_train_timesteps)
    if preset.stage == 1:
        return partial(stage1_inputs, timestep_weights=weights)
    return Stage2Inputs(load_image_noising_scheduler(model_dir), preset.training["stage2_conditioning"], weights)


def pixels_to_tensor(pixels, device) -> torch.Tensor:
    """uint8 [B, H, W, 3] RGB to float [B, 3, H, W] in [-1, 1], IF's pixel range."""
    return (torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()


def caption_embeds(cache: TextEmbedCache, captions: list[str], dropout: float, gen: torch.Generator, device,
                   dtype) -> torch.Tensor:
    """Cached embeds of a batch's captions, each replaced by the empty prompt's with chance `dropout`."""
    drop = torch.rand(len(captions), generator=gen) < dropout
    return cache.batch(["" if d else c for c, d in zip(captions, drop.tolist())], device=device, dtype=dtype)


def clip_gradients(accelerator, params, training: dict) -> None:
    """Clip at max_grad_norm (0: off): the total norm (`norm`) or each value (`value`, SimpleTuner's default)."""
    limit = training["max_grad_norm"]
    if limit > 0 and training["grad_clip_method"] == "value":
        accelerator.clip_grad_value_(params, limit)
    elif limit > 0:
        accelerator.clip_grad_norm_(params, limit)


def diffusion_loss(pred: torch.Tensor, inputs: StageInputs, alphas_cumprod: torch.Tensor, snr_gamma: float):
    """Epsilon MSE on the first 3 of IF's 6 output channels (the rest is learned variance).

    With snr_gamma > 0, each sample is weighted by min(SNR, gamma) / SNR (Min-SNR).
    """
    per_sample = ((pred[:, :3].float() - inputs.target.float()) ** 2).mean(dim=(1, 2, 3))
    if snr_gamma > 0:
        a = alphas_cumprod.to(inputs.timesteps.device)[inputs.timesteps]
        snr = a / (1 - a)
        per_sample = per_sample * torch.clamp(snr, max=snr_gamma) / snr
    return per_sample.mean()


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """A CPU generator for one micro-batch, the same in an unbroken and a resumed run."""
    digest = hashlib.sha256(f"{seed}:{step}:{micro}:{rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def batch_stream(data, start: ckpt.Position, batch_size: int, rank: int, world: int,
                 workers: int = 0) -> Iterator[Any]:
    """Batches forever, epoch after epoch, from `start` (`workers` threads cut them ahead).

    Each batch knows its epoch and index: the consumer records its position from the batch it
    trains on, not from what the threads have cut ahead.
    """
    epoch, index = start.epoch, start.batch_index
    while True:
        yield from data.batches(epoch, batch_size, start=index, rank=rank, world_size=world, workers=workers)
        epoch, index = epoch + 1, 0


# ---- stopping on Ctrl-C / SIGTERM --------------------------------------------------
class StopSignal:
    """SIGINT/SIGTERM: before training, stop at once; during training, stop after the step."""

    def __init__(self) -> None:
        self.requested = False
        self.armed = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if not self.armed:
            raise KeyboardInterrupt
        self.requested = True

    def agreed(self, accelerator) -> bool:
        """True on every process once any process was asked to stop."""
        if accelerator.num_processes == 1:
            return self.requested
        flag = torch.tensor([int(self.requested)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item())


# ---- the run -------------------------------------------------------------------------
def train(preset: Preset, events: EventWriter, *, resume: str = "latest", accelerator=None) -> str:
    """Train per the preset; returns the run_end status ("completed" or "stopped").

    Raises FloydError for problems the user can fix; the caller turns exceptions into a
    `run_end` failed event and the exit code.
    """
    from accelerate import Accelerator

    stop = StopSignal()
    stop.install()
    try:
        accelerator = accelerator or Accelerator(mixed_precision=preset.training["mixed_precision"])
        return _train(preset, events, resume, accelerator, stop)
    except KeyboardInterrupt:
        return "stopped"
    finally:
        stop.restore()


@dataclass
class Run:
    """Everything one training run holds between set-up, the loop, checkpoints and validation."""

    preset: Preset
    events: EventWriter
    accelerator: Any
    stop: StopSignal
    data: Any
    total: int
    fingerprint: dict[str, Any]
    model_dir: Path
    base_label: str
    note: str
    make_inputs: Callable[[torch.Tensor, Any, torch.Generator], StageInputs]
    eval_images: list[Any]
    cache: TextEmbedCache
    unet: Any
    params: list[torch.nn.Parameter]
    noise_scheduler: Any
    optimizer: Any
    lr_scheduler: Any
    guard: DiskGuard
    weight_dtype: torch.dtype
    position: ckpt.Position = field(default_factory=ckpt.Position)
    last_images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def device(self):
        return self.accelerator.device

    @property
    def out(self) -> Path:
        return self.preset.output_dir

    @property
    def samples_per_step(self) -> int:
        t = self.preset.training
        return t["train_batch_size"] * t["gradient_accumulation_steps"] * self.world


def _train(preset: Preset, events: EventWriter, resume: str, accelerator, stop: StopSignal) -> str:
    run = setup(preset, events, resume, accelerator, stop)
    t, v, position = preset.training, preset.validation, run.position
    events.emit("phase", name="train")
    stop.armed = True
    batches = batch_stream(run.data, position, t["train_batch_size"], run.rank, run.world,
                           workers=t["dataloader_workers"])
    started, start_step, last_checkpoint = time.perf_counter(), position.step, position.step
    run.unet.train()
    while position.step < run.total:
        loss, lr = train_step(run, batches)
        rate = (position.step - start_step) * run.samples_per_step / max(time.perf_counter() - started, 1e-9)
        events.emit("step", step=position.step, epoch=position.epoch, loss=round(loss, 6), lr=lr,
                    samples_per_s=round(rate, 2),
                    eta_s=round((run.total - position.step) * run.samples_per_step / max(rate, 1e-9), 1))
        if stop.agreed(accelerator):
            save_checkpoint(run)
            return "stopped"
        if every(t["checkpointing_steps"], position.step, run.total):
            save_checkpoint(run)
            last_checkpoint = position.step
        asked = control.validation_requested(run.out, accelerator, run.main)  # the monitor's "validate now"
        if every(v["validation_steps"], position.step, run.total) or (asked and position.step < run.total):
            validate(run)

    if last_checkpoint != position.step or not from_main(accelerator, lambda: bool(ckpt.list_checkpoints(run.out))):
        save_checkpoint(run)
    if stop.agreed(accelerator):  # a stop that arrived during the last step or its checkpoint
        return "stopped"
    stop.armed = False  # from here a Ctrl-C stops at once: the final checkpoint lets a rerun redo the end
    validate(run, then_train=False)
    from_main(accelerator, lambda: run.guard.check("pytorch_lora_weights.safetensors"))
    if run.main:
        finish(preset, events, accelerator.unwrap_model(run.unet), run.model_dir, run.cache,
               base_label=run.base_label, note=run.note, steps=position.step, world=run.world,
               images=run.last_images, device=run.device, dtype=run.weight_dtype,
               eval_image=run.eval_images[0] if run.eval_images else None)
    accelerator.wait_for_everyone()
    return "completed"


def every(interval: int, step: int, total: int) -> bool:
    """True on each `interval`-th step before the last (the end has its own checkpoint and validation)."""
    return bool(interval) and step % interval == 0 and step < total


def train_step(run: Run, batches: Iterator[Any]) -> tuple[float, float]:
    """One optimizer step over `gradient_accumulation_steps` micro-batches; returns (mean loss, lr used)."""
    t, position, accelerator = run.preset.training, run.position, run.accelerator
    accum = t["gradient_accumulation_steps"]
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(accum):
        batch = next(batches)
        position.epoch, position.batch_index = batch.epoch, batch.index + 1
        gen = step_generator(t["seed"], position.step, micro, run.rank)
        torch.manual_seed(gen.initial_seed())  # LoRA dropout: per step too, so a resume replays it
        x0 = pixels_to_tensor(batch.pixels, run.device)
        inputs = run.make_inputs(x0, run.noise_scheduler, gen)
        cond = caption_embeds(run.cache, batch.captions, t["caption_dropout_probability"], gen, run.device,
                              run.weight_dtype)
        sync = accelerator.no_sync(run.unet) if micro < accum - 1 else nullcontext()
        with sync, accelerator.autocast():
            pred = run.unet(inputs.sample.to(run.weight_dtype), inputs.timesteps, encoder_hidden_states=cond,
                            class_labels=inputs.class_labels).sample
            loss = diffusion_loss(pred, inputs, run.noise_scheduler.alphas_cumprod, t["snr_gamma"])
            accelerator.backward(loss / accum)
        loss_sum += loss.detach() / accum
    clip_gradients(accelerator, run.params, t)
    run.optimizer.step()
    lr = run.lr_scheduler.get_last_lr()[0]  # the rate this step used, before the schedule moves on
    run.lr_scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    position.step += 1
    return accelerator.reduce(loss_sum, reduction="mean").item(), lr


def save_checkpoint(run: Run) -> None:
    """Save a checkpoint at the run's position (rank 0 writes; every rank waits for it)."""
    step = run.position.step
    from_main(run.accelerator, lambda: run.guard.check(f"checkpoint-{step:06d}"))
    if run.main:
        bare = run.accelerator.unwrap_model(run.unet)
        path = ckpt.save_checkpoint(run.out, run.position, trainable=trainable_state_dict(bare),
                                    optimizer=run.optimizer, lr_scheduler=run.lr_scheduler,
                                    fingerprint=run.fingerprint, limit=run.preset.training["checkpoints_total_limit"],
                                    # a LoRA file beside the state: `floydtui generate --lora CHECKPOINT` samples it
                                    write_lora=(lambda folder: save_lora(folder, bare, run.preset.stage,
                                                                         run.preset.training,
                                                                         metadata=lora_metadata(run.preset)))
                                    if run.preset.is_lora else None)
        run.events.emit("checkpoint", step=step, path=str(path))
    run.accelerator.wait_for_everyone()


def validate(run: Run, then_train: bool = True) -> None:
    """Sample the validation images at the run's step into validation/step-N (rank 0; every rank waits)."""
    preset, events, step = run.preset, run.events, run.position.step
    from_main(run.accelerator, lambda: run.guard.check(f"validation/step-{step:06d}"))
    if run.main:
        events.emit("phase", name="validate")
        bare = run.accelerator.unwrap_model(run.unet)
        bare.eval()
        pipe = load_pipeline(run.model_dir, preset.stage, unet=bare, dtype=run.weight_dtype)
        pipe.to(run.device)
        folder = run.out / "validation" / f"step-{step:06d}"
        negative, v = preset.validation["validation_negative_prompt"], preset.validation
        with run.accelerator.autocast():
            if preset.stage == 1:
                run.last_images = run_validation(pipe, run.cache, prompts=preset.validation_prompt_list,
                                                 negative_prompt=negative, sizes=preset.validation_sizes,
                                                 validation=v, folder=folder)
            else:
                run.last_images = run_stage2_validation(pipe, run.cache, eval_images=run.eval_images,
                                                        negative_prompt=negative, sizes=preset.validation_sizes,
                                                        validation=v, folder=folder)
        bare.train()
        events.emit("validation", step=step, images=run.last_images)
        if then_train:
            events.emit("phase", name="train")
    run.accelerator.wait_for_everyone()


def setup(preset: Preset, events: EventWriter, resume: str, accelerator, stop: StopSignal) -> Run:
    """Everything before the first step: data, resume point, models, the embed cache, the optimizer."""
    from floydtui.data.dataset import TrainingData, eval_image_counts, eval_image_problem

    t, v = preset.training, preset.validation
    out = preset.output_dir
    main, world = accelerator.is_main_process, accelerator.num_processes
    device, weight_dtype = accelerator.device, WEIGHT_DTYPES[t["mixed_precision"]]
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "preset.toml", preset.to_toml(absolute_paths=True))

    # Caches on a filesystem every machine sees are filled once, others once per machine; the rest find them full.
    pixels_shared, embeds_shared = shared_folders(accelerator, [cache_root() / "pixels", preset.text_embeds_cache_dir])
    data = fillers_first(accelerator, pixels_shared, lambda: TrainingData(preset, events=events))
    no_eval_images = eval_image_problem(preset)
    if no_eval_images:
        raise FloydError([no_eval_images])
    batch_size, accum = t["train_batch_size"], t["gradient_accumulation_steps"]
    starved = data.rank_feed_problems(batch_size, world)
    if starved:
        raise FloydError(starved)
    per_epoch = data.steps_per_epoch(batch_size, world)
    if per_epoch == 0:
        raise FloydError.one(f"{len(data.records)} usable image(s) make no full batch of {batch_size} per process",
                             key="train_batch_size", hint="lower train_batch_size or add images")
    total = t["max_train_steps"] or max(1, t["num_train_epochs"] * per_epoch // accum)

    model_id = preset.base_model
    # A bad --resume or a checkpoint of other settings fails now, not after downloads and the embed cache.
    fingerprint = run_fingerprint(preset, model_id, world)
    if main:
        ckpt.remove_partial(out)
    found = from_main(accelerator, lambda: resume_point(out, resume, fingerprint))  # out is rank 0's alone
    with accelerator.main_process_first():
        model_dir = resolve_model_dir(model_id, stage=preset.stage, revision=preset.model["revision"],
                                      variant=preset.model["variant"], events=events if main else None)
        text_dir = resolve_text_encoder_dir(model_id, model_dir, stage=preset.stage,
                                            revision=preset.model["revision"], variant=preset.model["variant"],
                                            events=events if main else None)
    base_label, note = model_label(model_id, model_dir), builtin_note(model_id)
    noise_scheduler = load_noise_scheduler(model_dir)
    make_inputs = input_builder(preset, model_dir, noise_scheduler)  # a bias that misfits the schedule fails now
    eval_images = []
    if preset.stage == 2:
        # The validation seed picks them: the same images in every run and after a resume, whatever the training seed.
        eval_images = data.eval_images(eval_image_counts(preset), seed=v["validation_seed"]) if main else []
    events.emit("run_start", run_id=f"{time.strftime('%Y%m%d-%H%M%S')}-{out.name}", flavour=preset.flavour.name,
                base_model=base_label, model_id=model_id, note=note, total_steps=total, world_size=world,
                device=str(device), pid=run_pid(), host=socket.gethostname())
    for problem in data.warnings:
        events.warning(problem.message, problem.hint)

    # Every prompt through T5 once; T5 is gone before the UNet loads.
    events.emit("phase", name="embed_cache")
    cache = TextEmbedCache(preset.text_embeds_cache_dir, encoder_identity(text_dir), weight_dtype,
                           clean_caption=t["clean_caption"])
    share, sharers = cache_share(accelerator, embeds_shared)
    build_cache(cache, [*data.captions(), *preset.validation_prompt_list, v["validation_negative_prompt"], ""],
                text_dir, placement=t["text_encoder_placement"], batch_size=t["embed_batch_size"],
                variant=preset.model["variant"], events=events if main else None, rank=share, world_size=sharers,
                barrier=accelerator.wait_for_everyone)

    unet = load_unet(model_dir, weight_dtype, preset.model["variant"])
    set_attention(unet, t["attention_mechanism"])
    if t["gradient_checkpointing"]:
        unet.enable_gradient_checkpointing()
    torch.manual_seed(t["seed"])  # adapter init must not depend on whether T5 ran (a warm cache skips it)
    params = setup_trainable(unet, t)
    unet.to(device)
    optimizer = make_optimizer(params, t)
    lr_scheduler = make_lr_scheduler(optimizer, t, total)
    unet, optimizer = accelerator.prepare(unet, optimizer)

    position = ckpt.Position()
    if resume == "none" and main:
        old = ckpt.list_checkpoints(out)
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
        if old:
            events.warning(f"--resume none: removed {len(old)} earlier checkpoint(s) of {out}",
                           hint="a later --resume latest continues this run, not the old one")
    if found:
        position, weights, state = from_main(accelerator, lambda: ckpt.load_checkpoint(found, fingerprint))
        load_trainable_state_dict(accelerator.unwrap_model(unet), weights)
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        ckpt.restore_rng(state["rng"])
        events.warning(f"resuming from {found.name} (step {position.step} of {total})",
                       hint="pass --resume none to start over")

    return Run(preset=preset, events=events, accelerator=accelerator, stop=stop, data=data, total=total,
               fingerprint=fingerprint, model_dir=model_dir, base_label=base_label, note=note,
               make_inputs=make_inputs, eval_images=eval_images, cache=cache, unet=unet, params=params,
               noise_scheduler=noise_scheduler, optimizer=optimizer, lr_scheduler=lr_scheduler,
               guard=DiskGuard.for_preset(preset),  # rank 0 checks the disks it writes to; every rank stops with it
               weight_dtype=weight_dtype, position=position)


def finish(preset: Preset, events: EventWriter, unet, model_dir: Path, cache: TextEmbedCache, *, base_label: str,
           note: str, steps: int, world: int, images: list[dict[str, Any]], device="cpu", dtype=None,
           eval_image=None) -> Path:
    """Save the LoRA and model card, then load the LoRA the way users will and check it does something.

    Stage II's load check upscales `eval_image` (the first eval image) with its caption.
    """
    out = preset.output_dir
    events.emit("phase", name="save")
    path = save_lora(out, unet, preset.stage, preset.training, metadata=lora_metadata(preset))
    atomic_write_text(out / "README.md", model_card(preset, base_model=base_label, note=note, steps=steps,
                                                    world_size=world, validation_images=images))
    if preset.is_lora:
        prompt = preset.validation_prompt_list[0] if preset.stage == 1 else eval_image.caption
        diff, loaded = load_check(model_dir, preset.stage, out, cache, prompt=prompt,
                                  negative_prompt=preset.validation["validation_negative_prompt"],
                                  size=preset.validation_sizes[0], validation=preset.validation,
                                  device=device, dtype=dtype, eval_image=eval_image)
        if not loaded.complete:
            events.warning(f"my LoRA is partly lost: load_lora_weights placed {loaded.landed} of the {loaded.saved} "
                           f"tensors in {out / 'pytorch_lora_weights.safetensors'}",
                           hint="this is a bug in floydtui or a diffusers version it does not know; report it")
        if diff <= NO_EFFECT_ATOL:
            events.warning(
                "my LoRA has no effect: the saved LoRA, loaded with load_lora_weights into a fresh pipeline, gives "
                "the same image as the base model for the same seed",
                hint="train longer or with a higher learning_rate; check lora_target_modules includes "
                     "add_k_proj/add_v_proj (IF's text conditioning) and that the loss went down")
    return path


def lora_metadata(preset: Preset) -> dict[str, str]:
    """floydtui's keys in a LoRA file's header: what `floydtui generate` reads to check and sample it."""
    return {"base_model": preset.base_model, "flavour": preset.flavour.name,
            "clean_caption": str(preset.training["clean_caption"]).lower()}


def resume_point(out: Path, resume: str, fingerprint: dict[str, Any]) -> Path | None:
    """The checkpoint to resume from, checked against this run's settings (None: start fresh)."""
    found = ckpt.find_resume(out, resume)
    if found:
        ckpt.check_checkpoint(found, fingerprint)
    return found


def set_attention(unet, mechanism: str) -> None:
    """sdpa is diffusers' default for IF's attention; xformers only where it is installed."""
    if mechanism == "xformers":
        if importlib.util.find_spec("xformers") is None:
            raise FloydError.one("attention_mechanism = \"xformers\" but xformers is not installed",
                                 key="attention_mechanism",
                                 hint="pip install xformers (NVIDIA GPUs only), or set attention_mechanism = \"sdpa\"")
        unet.enable_xformers_memory_efficient_attention()


def run_fingerprint(preset: Preset, model_id: str, world: int) -> dict[str, Any]:
    """Settings a checkpoint must share with the run that resumes it."""
    t = preset.training
    # learning_rate too: the saved schedule keeps its starting rate, so a new one would be silently ignored
    keys = ("model_type", "lora_rank", "lora_alpha", "lora_target_modules", "use_dora", "use_bitfit",
            "train_batch_size", "gradient_accumulation_steps", "optimizer", "seed", "learning_rate",
            "clean_caption")  # the text the captions become: a resume with another would train on other embeds
    if preset.stage == 2:
        keys += ("stage2_conditioning",)
    return json.loads(json.dumps({"model": model_id, "world_size": world, **{k: t[k] for k in keys}}))
