"""The preset schema: every key floydtui reads, its table, type, default and limits.

Keys are SimpleTuner's own names (DESIGN.md section 4), so flattening the tables gives
SimpleTuner's config.json. Keys are unique across tables, which lets `--set KEY=VALUE`
and the SimpleTuner importer find a key's table from its name alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from floydtui.config.flavours import FLAVOUR_NAMES
from floydtui.config.reporting import REPORT_TO
from floydtui.errors import Problem

AUTO = "auto"  # a default that depends on the flavour (resolved in Preset)


@dataclass(frozen=True)
class Field:
    key: str
    type: type | tuple[type, ...]
    default: Any
    doc: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    nullable: bool = False
    simpletuner: bool = True  # False: floydtui's own key, not in SimpleTuner's config.json

    def type_name(self) -> str:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
                 list: "a list", dict: "a table"}
        return " or ".join(names.get(t, t.__name__) for t in types)

    def allowed(self) -> str:
        """What a user may write, for error messages and the wizard."""
        if self.choices:
            return "one of " + ", ".join(repr(c) if isinstance(c, str) else str(c) for c in self.choices)
        parts = [self.type_name()]
        if self.min is not None:
            parts.append(f"{'>' if self.min_exclusive else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " ".join(parts)


def _f(key, type_, default, doc, **kw) -> Field:
    return Field(key, type_, default, doc, **kw)


NUM = (int, float)

MODEL_FIELDS = [
    _f("model_family", str, "deepfloyd", "The model family; floydtui trains DeepFloyd IF only.",
       choices=("deepfloyd",)),
    _f("model_flavour", str, "i-medium-400m", "Which DeepFloyd IF stage and size to train.",
       choices=FLAVOUR_NAMES),
    _f("pretrained_model_name_or_path", str, AUTO,
       "A hub id, a local folder, or a built-in model: builtin:shapes-if-i / -ii (pretrained on the shapes "
       "world, for the demo), builtin:tiny-if-i / -ii (random weights, for tests); auto = the flavour's hub id."),
    _f("revision", str, "main", "The hub revision (branch, tag or commit) to load."),
    _f("variant", str, AUTO, "Weight file variant to load: fp16 where the repo has it (auto), or none.",
       choices=(AUTO, "fp16", "none")),
]

# The timestep-bias keys each strategy reads (as SimpleTuner's generate_timestep_weights does): the
# model card lists those in force, the wizard shows those.
TIMESTEP_BIAS_KEYS: dict[str, tuple[str, ...]] = {
    "none": (), "earlier": ("timestep_bias_multiplier", "timestep_bias_portion"),
    "later": ("timestep_bias_multiplier", "timestep_bias_portion"),
    "range": ("timestep_bias_multiplier", "timestep_bias_begin", "timestep_bias_end")}

TRAINING_FIELDS = [
    _f("model_type", str, "lora", "lora trains adapters; full trains the whole UNet (>48G for stage I).",
       choices=("lora", "full")),
    _f("lora_rank", int, 32, "LoRA rank (the guide: 32).", min=1, max=1024),
    _f("lora_alpha", NUM, AUTO, "LoRA alpha; auto = the rank (scale 1.0).", min=0, min_exclusive=True),
    _f("lora_dropout", NUM, 0.0, "Dropout on the LoRA path.", min=0, max=0.9),
    _f("lora_target_modules", list, ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"],
       "UNet modules that get adapters; add_k_proj/add_v_proj carry IF's text conditioning.", simpletuner=False),
    _f("use_dora", bool, False, "Weight-decomposed LoRA (DoRA). The guide: experimental."),
    _f("use_bitfit", bool, False, "Also train the UNet's biases (BitFit). The guide: untested for efficacy."),
    _f("learning_rate", NUM, 4e-5, "Highest learning rate (the guide: 4e-5).", min=0, max=1.0,
       min_exclusive=True),
    _f("lr_end", NUM, 4e-6, "End learning rate of decaying schedules (the guide: 4e-6).", min=0, max=1.0),
    _f("lr_scheduler", str, "polynomial", "Learning-rate schedule.",
       choices=("constant", "constant_with_warmup", "linear", "cosine", "polynomial")),
    _f("lr_warmup_steps", int, 0, "Warm-up steps.", min=0),
    _f("train_batch_size", int, 4, "Images per step per device (the guide: 4).", min=1, max=4096),
    _f("gradient_accumulation_steps", int, 1, "Steps whose gradients add up before an update.", min=1,
       max=1024),
    _f("gradient_checkpointing", bool, False, "Recompute activations in backward: less memory, ~20% slower."),
    _f("max_train_steps", int, 1000, "Optimizer steps to train; 0 = use num_train_epochs.", min=0),
    _f("num_train_epochs", int, 0, "Epochs to train when max_train_steps is 0.", min=0),
    _f("mixed_precision", str, "bf16", "Precision of the frozen weights and the forward pass.",
       choices=("no", "bf16", "fp16")),
    _f("optimizer", str, "adamw_bf16", "adamw (fp32 states) or adamw_bf16 (pure-bf16 states, less memory).",
       choices=("adamw", "adamw_bf16")),
    _f("adam_beta1", NUM, 0.9, "AdamW beta1.", min=0, max=1),
    _f("adam_beta2", NUM, 0.999, "AdamW beta2.", min=0, max=1),
    _f("adam_weight_decay", NUM, 1e-2, "AdamW weight decay.", min=0, max=1),
    _f("adam_epsilon", NUM, 1e-8, "AdamW epsilon.", min=0, min_exclusive=True),
    _f("max_grad_norm", NUM, 1.0, "Gradient clipping threshold; 0 turns it off.", min=0),
    _f("grad_clip_method", str, "norm", "norm clips the gradients' total norm at max_grad_norm; value clips each "
       "gradient value (SimpleTuner's default).", choices=("norm", "value")),
    _f("snr_gamma", NUM, 0.0, "Min-SNR loss weighting gamma (5 is common); 0 turns it off.", min=0),
    _f("timestep_bias_strategy", str, "none",
       "Which timesteps to draw more often (SimpleTuner's timestep bias; docs/train.md): later = the highest "
       "timesteps, the noisiest, where colour and layout are decided (SimpleTuner's code does this, though its "
       "help text calls them low-noise); earlier = the lowest (details); range = timestep_bias_begin to _end; "
       "none = uniform.", choices=("none", "earlier", "later", "range")),
    _f("timestep_bias_multiplier", NUM, 1.0, "How many times more often the biased timesteps are drawn; must be "
       "> 0 when a strategy is set."),
    _f("timestep_bias_portion", NUM, 0.25, "earlier/later: the fraction of the schedule that is biased (0.25 = "
       "the last or first 250 of 1000 timesteps).", min=0, max=1),
    _f("timestep_bias_begin", int, 0, "range: the first biased timestep.", min=0),
    _f("timestep_bias_end", int, 1000, "range: the end of the biased timesteps (not included); at most the "
       "schedule's num_train_timesteps (1000 for IF).", min=0),
    _f("caption_dropout_probability", NUM, 0.1, "Chance a caption is replaced by the empty prompt.",
       min=0, max=1),
    _f("attention_mechanism", str, "sdpa", "sdpa (PyTorch) or xformers (NVIDIA only, when installed).",
       choices=("sdpa", "xformers")),
    _f("resolution", int, AUTO, "Training size in pixels: 64 for stage I, 256 for stage II (auto).",
       min=8, max=4096),
    _f("resolution_type", str, "pixel", "DeepFloyd trains in pixels.", choices=("pixel",)),
    _f("seed", int, 42, "Random seed for noise, crops and caption dropout.", min=0),
    _f("checkpointing_steps", int, 500, "Save a resumable checkpoint every N steps; 0 = only at the end.",
       min=0),
    _f("checkpoints_total_limit", int, 3, "Keep the newest N checkpoints.", min=1),
    _f("text_encoder_placement", str, AUTO,
       "Where T5 runs while caching embeds: gpu, stream (layers from CPU memory), cpu; auto picks.",
       choices=(AUTO, "gpu", "stream", "cpu"), simpletuner=False),
    _f("embed_batch_size", int, 16, "Prompts encoded per batch while caching embeds.", min=1, max=1024, simpletuner=False),
    _f("clean_caption", bool, True, "Clean captions as IFPipeline does by default (URLs, HTML, punctuation) "
       "before T5; false only lower-cases and strips. Training, validation and generate all use it.",
       simpletuner=False),
    _f("stage2_conditioning", str, "pipeline",
       "Stage II input: pipeline (noised upscaled 64px image, class_labels=noise_level, as inference "
       "does) or timesteps (the reference trainers' way).", choices=("pipeline", "timesteps"), simpletuner=False),
    _f("dataloader_workers", int, 0, "Background threads preparing batches.", min=0, max=64, simpletuner=False),
    _f("min_free_disk_mib", int, 1024, "Stop with a saved state when the output disk has less free space.",
       min=0, simpletuner=False),
]

VALIDATION_FIELDS = [
    _f("validation_resolution", str, AUTO, "Sizes, e.g. \"64,96,64x96,96x64\"; auto = the native size."),
    _f("validation_prompt", str, "a photo of a corgi wearing a red hat", "The main validation prompt."),
    _f("validation_prompts", list, [], "More validation prompts.", simpletuner=False),
    _f("validation_negative_prompt", str, "", "Negative prompt for validation."),
    _f("validation_steps", int, 100, "Validate every N steps; 0 = only at the end.", min=0),
    _f("validation_num_inference_steps", int, 30, "Denoising steps per validation image.", min=1, max=1000),
    _f("validation_guidance", NUM, AUTO, "Classifier-free guidance scale; auto = the pipeline's default (7 for "
       "stage I, 4 for stage II), what `floydtui generate` uses.", min=0),
    _f("validation_seed", int, 0, "Seed of validation images (fixed, so steps compare).", min=0),
    _f("num_validation_images", int, 1, "Images per prompt and size, seeded validation_seed, validation_seed + 1, ... "
       "(what `floydtui generate --seed` gives); several show what a LoRA does more surely than one.", min=1, max=10),
    _f("num_eval_images", int, 4, "Stage II: eval images taken from each dataset.", min=0, max=1000),
]

OUTPUT_FIELDS = [
    _f("output_dir", str, "output/deepfloyd-lora", "The run directory."),
    _f("report_to", str, "none",
       "Trackers that get loss, lr, samples/s and validation images: tensorboard (OUTPUT_DIR/logs), wandb, "
       "all (those installed) or none.", choices=REPORT_TO),
    _f("tracker_project_name", str, "floydtui", "The tracker's project (TensorBoard: OUTPUT_DIR/logs/<project>)."),
    _f("tracker_run_name", str, AUTO, "The tracker's run name; auto = the output folder's name."),
    _f("webhook_config", (str, dict, list), None,
       "SimpleTuner's webhook config: a JSON file path (keeps the URLs out of the preset), a JSON string, or a "
       "table/array of tables with webhook_type (discord / raw) and webhook_url / callback_url.", nullable=True),
]

DATASET_FIELDS = [
    _f("id", str, None, "A unique name for this dataset."),
    _f("type", str, "local", "Where the data lives.", choices=("local",)),
    _f("dataset_type", str, "image", "image, or text_embeds for the embed cache.",
       choices=("image", "text_embeds")),
    _f("default", bool, False, "The default text_embeds backend."),
    _f("disable", bool, False, "Leave this dataset out."),
    _f("instance_data_dir", str, None, "Folder of training images (searched recursively).", nullable=True),
    _f("cache_dir", str, None, "text_embeds: the embed-cache folder.", nullable=True),
    _f("crop", bool, True, "Cut a bucket-sized crop instead of resizing the whole image."),
    _f("crop_aspect", str, "square", "square (RxR) or preserve (the image's aspect).",
       choices=("square", "preserve")),
    _f("crop_style", str, "random", "random (new each epoch), center or corner.",
       choices=("random", "center", "corner")),
    _f("resolution", int, None, "Overrides the preset's resolution.", min=8, max=4096, nullable=True),
    _f("resolution_type", str, None, "Overrides the preset's resolution_type.", choices=("pixel",),
       nullable=True),
    _f("minimum_image_size", int, 64, "Skip images smaller than this; never upsample.", min=0, max=16384),
    _f("maximum_image_size", int, 256, "Images larger than this are downsampled first; 0 = never (SimpleTuner's "
       "default).", min=0, max=65536, nullable=True),
    _f("target_downsample_size", int, 128, "Short edge that oversized images step down to (25% steps); 0 = none.",
       min=0, max=65536, nullable=True),
    _f("prepend_instance_prompt", bool, False, "Put instance_prompt before each caption."),
    _f("instance_prompt", str, "", "The trigger phrase."),
    _f("caption_strategy", str, "filename", "filename, textfile (sidecar .txt) or instanceprompt.",
       choices=("filename", "textfile", "instanceprompt")),
    _f("repeats", int, 0, "Extra passes over this dataset per epoch.", min=0, max=10000),
    _f("num_eval_images", int, None, "Stage II: eval images from this dataset.", min=0, max=1000,
       nullable=True),
]

TABLES: dict[str, list[Field]] = {
    "model": MODEL_FIELDS,
    "training": TRAINING_FIELDS,
    "validation": VALIDATION_FIELDS,
    "output": OUTPUT_FIELDS,
}

FIELD_BY_KEY: dict[str, tuple[str, Field]] = {
    f.key: (table, f) for table, fields in TABLES.items() for f in fields
}
DATASET_FIELD_BY_KEY: dict[str, Field] = {f.key: f for f in DATASET_FIELDS}

TOP_LEVEL = (*TABLES, "datasets", "extra")


def matches_target(module_name: str, target: str) -> bool:
    """peft's rule for an entry of lora_target_modules: the module's name itself or any dotted suffix of it."""
    return module_name == target or module_name.endswith("." + target)


def unmatched_targets(layers, targets) -> list[str]:
    """The targets that match none of `layers` (the names of the Linear and Conv2d layers peft can wrap)."""
    layers = list(layers)
    return [t for t in targets if not any(matches_target(name, t) for name in layers)]


def unmatched_targets_problem(absent: list[str], unet: str, where: str = "") -> Problem:
    """The error for targets that match no layer of `unet` (check's, before a load; the trainer's, after)."""
    return Problem(f"lora_target_modules {absent} match no Linear or Conv2d layer of {unet}", where=where,
                   key="lora_target_modules",
                   hint="a target is a layer's name or its dotted end, as peft matches it: IF's attention modules "
                        "are to_q, to_k, to_v, to_out.0, add_k_proj, add_v_proj; the ResNets' conv1, conv2, "
                        "time_emb_proj")
