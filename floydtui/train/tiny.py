"""The built-in tiny DeepFloyd IF models (DESIGN.md section 8).

`builtin:shapes-if-i` and `builtin:shapes-if-ii` are pretrained miniatures: scripts/pretrain_tiny.py
trains them on the shapes world (floydtui/train/shapes.py) and the package ships their folders in
floydtui/train/weights/. `builtin:tiny-if-i` and `builtin:tiny-if-ii` are miniatures of IF built from the real
classes (UNet2DConditionModel with IF's block types and 6 output channels, T5EncoderModel,
a T5 tokenizer, IF's DDPMScheduler settings) with a fixed seed, so every machine builds the
same weights. They are saved with `save_pretrained` and then load exactly as a downloaded
IF folder does. They exist so the whole program runs anywhere in seconds; they are not
models of anything.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from floydtui.config.flavours import BUILTIN_MODELS, TEXT_MAX_LENGTH, TINY_TEXT_DIM
from floydtui.paths import cache_root

TINY_VERSION = "v2"  # bumped whenever the built layout changes, so stale cached builds are not reused
TINY_NAMES = {"builtin:tiny-if-i": "tiny-if-i", "builtin:tiny-if-ii": "tiny-if-ii"}
SHAPES_NAMES = {"builtin:shapes-if-i": "shapes-if-i", "builtin:shapes-if-ii": "shapes-if-ii"}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # the pretrained builtin models the package ships
TINY_SEED = 20230428  # IF's release date: any fixed number works, this one is memorable

# A fixed corpus for the tokenizer: shapes, colours and the words of the prompts people
# type, so the demo's captions tokenize into real pieces rather than unknowns.
_CORPUS = """a photo of a corgi wearing a red hat on the beach at sunset
a red circle on a blue background; a green square on a yellow background
a blue triangle next to a white star, an orange ring under a purple cross
an oil painting of a castle in the mountains, watercolour, pencil sketch, digital art
a portrait of a woman with long hair, a man in a suit, a cat sleeping on a sofa
a dog running in the park, a bird flying over the sea, trees in the snow at night
the quick brown fox jumps over the lazy dog; black grey pink brown cyan magenta
small large big tiny bright dark light shadow striped dotted shape shapes colour colours
one two three four five six seven eight nine ten many some with and or of in on at by
high quality, detailed, sharp focus, cinematic lighting, studio photo, close-up, wide shot
A B C D E F G H I J K L M N O P Q R S T U V W X Y Z 0 1 2 3 4 5 6 7 8 9 . ! ? ' " ( ) : / _ = +
"""


def builtin_model_dir(model_id: str) -> Path:
    """The folder a builtin model lives in: the package's (shapes models) or the cache's, built or not (tiny ones)."""
    if model_id in SHAPES_NAMES:
        return WEIGHTS_DIR / SHAPES_NAMES[model_id]
    return cache_root() / "models" / f"{TINY_NAMES[model_id]}-{TINY_VERSION}"


def ensure_builtin(model_id: str) -> Path:
    """The builtin model's folder, building it on first use.

    Built in a temp folder next to the final one and renamed into place, so two
    processes that race both end with one complete folder (the loser discards its copy).
    """
    dest = builtin_model_dir(model_id)
    if (dest / "model_index.json").is_file():
        return dest
    if model_id in SHAPES_NAMES:  # shipped, never built: pretraining takes half an hour
        from floydtui.errors import FloydError

        raise FloydError.one(f"{model_id}'s weights are missing from the installed package ({dest})",
                             key="pretrained_model_name_or_path",
                             hint="reinstall floydtui (pip install -e .), or rebuild them with "
                                  f"scripts/pretrain_tiny.py --stage {BUILTIN_MODELS[model_id]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        build_tiny(BUILTIN_MODELS[model_id], tmp, label=model_id)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (dest / "model_index.json").is_file():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def build_tokenizer():
    """A T5TokenizerFast around a unigram tokenizer trained on the fixed corpus."""
    from floydtui.lazyimports import ready

    ready()
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    # T5's tokenizer is a unigram model, but the unigram trainer is not deterministic across
    # runs. BPE training is: it picks the pieces, and the unigram model gets them with equal
    # scores (the fewest pieces win), so every machine builds the same token ids.
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.NFKC()
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    specials = ["<pad>", "</s>", "<unk>"]
    bpe.train_from_iterator(_CORPUS.splitlines(), trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, show_progress=False))
    pieces = [p for p, _ in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1]) if p not in specials]
    tok = Tokenizer(models.Unigram([(p, 0.0) for p in specials] + [(p, -1.0) for p in pieces], unk_id=2))
    tok.normalizer = bpe.normalizer
    tok.pre_tokenizer = bpe.pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=TEXT_MAX_LENGTH)


def build_text_encoder(tokenizer):
    """The tiny T5 encoder every builtin model shares: seeded, random, TINY_TEXT_DIM wide."""
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(TINY_SEED)
    return T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=TINY_TEXT_DIM, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False,
    )).eval()


def if_scheduler(stage: int):
    """IF's own DDPMScheduler settings for a stage."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", variance_type="learned_range",
        thresholding=True, dynamic_thresholding_ratio=0.95, sample_max_value=1.5 if stage == 1 else 1.0,
        clip_sample=True, clip_sample_range=1.0, prediction_type="epsilon",
    )


def image_noising_scheduler():
    """Stage II's image_noising_scheduler, as IF-II ships it."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=False)


def save_pipeline(stage: int, unet, tokenizer, text_encoder, dest: Path) -> None:
    """Save a stage I or II pipeline folder around `unet` the way a downloaded IF folder is laid out."""
    from diffusers import IFPipeline, IFSuperResolutionPipeline

    common = dict(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=if_scheduler(stage),
                  safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    if stage == 1:
        pipe = IFPipeline(**common)
    else:
        pipe = IFSuperResolutionPipeline(image_noising_scheduler=image_noising_scheduler(), **common)
    # transformers writes nothing on a rank other than global 0 once torch.distributed is up, but
    # each machine of a multi-machine run without a shared cache builds its own copy.
    text_encoder.should_save_on_this_rank = lambda is_main_process: is_main_process
    pipe.save_pretrained(dest, safe_serialization=True)


def build_tiny(stage: int, dest: Path, label: str = "") -> None:
    """Build the tiny stage I or II model into `dest` with save_pretrained."""
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnAddedKVProcessor

    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(tokenizer)
    torch.manual_seed(TINY_SEED + stage)  # the UNets differ per stage; the text encoder is shared
    # IF's layout in miniature: plain resnet blocks at full size, cross-attention below. Stage II
    # works at 4x the size, so it gets one more plain level (attention at 32px, not 64px: 15x faster).
    plain = 2 if stage == 1 else 3
    unet = UNet2DConditionModel(
        sample_size=64 if stage == 1 else 256,
        in_channels=3 if stage == 1 else 6,
        out_channels=6,  # IF predicts epsilon (3) and the learned variance range (3)
        down_block_types=["ResnetDownsampleBlock2D"] * plain + ["SimpleCrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=["SimpleCrossAttnUpBlock2D"] + ["ResnetUpsampleBlock2D"] * plain,
        block_out_channels=(16, 32, 64) if stage == 1 else (8, 16, 32, 64), layers_per_block=1,
        attention_head_dim=16, norm_num_groups=8,
        cross_attention_dim=64, encoder_hid_dim=TINY_TEXT_DIM, addition_embed_type="text",
        addition_embed_type_num_heads=4, cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift", act_fn="gelu", only_cross_attention=False,
        class_embed_type="timestep" if stage == 2 else None,
    )
    unet.set_attn_processor(AttnAddedKVProcessor())
    with torch.no_grad():  # a quiet output layer: the untrained miniature predicts near-zero noise, not chaos
        unet.conv_out.weight.mul_(0.1)
    save_pipeline(stage, unet, tokenizer, text_encoder, dest)
    (dest / "floydtui-builtin.json").write_text(json.dumps({
        "name": label or f"tiny-if-{'i' * stage}",
        "note": "floydtui's built-in tiny DeepFloyd IF miniature: real IF classes, random weights, "
                "a few million parameters. For demos and tests; it is not a model of anything.",
        "version": TINY_VERSION, "seed": TINY_SEED, "stage": stage}, indent=2) + "\n")


# The pretrained shapes models carry every switch of the real IF configs (../shared/ref/if-configs)
# except T5-XXL's 4096 width: at 4096 the text pooling alone (3 x 4096^2 weights in its attention)
# would be 50M parameters, a hundred times the whole UNet. The text input goes through text_proj
# as IF's does, from the shared tiny T5's TINY_TEXT_DIM.
IF_POOLING_HEADS = 64  # addition_embed_type_num_heads of every IF UNet
IF_II_SCALE = 1.4142271248762552  # IF-II's mid_block_scale_factor and resnet_out_scale_factor


def shapes_unet(stage: int, widths: tuple[int, ...] | None = None):
    """A freshly initialised (seeded) UNet of the shapes models' layout, ready to pretrain
    (`widths`: block_out_channels other than the shipped SHAPES_WIDTHS, for experiments).

    Stage I: IF-I's block types at four levels (64, 32, 16, 8 px), cross-attention on the two
    lowest. Stage II: IF-II's switches (timestep class embedding, skip-time activation, the
    1.414 scale factors, a gelu time embedding) at five levels, cross-attention on the two lowest.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnAddedKVProcessor

    torch.manual_seed(TINY_SEED + 10 + stage)
    common = dict(
        out_channels=6, mid_block_type="UNetMidBlock2DSimpleCrossAttn", layers_per_block=1,
        attention_head_dim=16, norm_num_groups=SHAPES_GROUPS[stage], encoder_hid_dim=TINY_TEXT_DIM,
        encoder_hid_dim_type="text_proj",
        addition_embed_type="text", addition_embed_type_num_heads=IF_POOLING_HEADS,
        cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu",
        only_cross_attention=False,
    )
    if stage == 1:
        widths = widths or SHAPES_WIDTHS[1]
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=3, block_out_channels=widths, cross_attention_dim=widths[-1],
            down_block_types=["ResnetDownsampleBlock2D"] * 2 + ["SimpleCrossAttnDownBlock2D"] * 2,
            up_block_types=["SimpleCrossAttnUpBlock2D"] * 2 + ["ResnetUpsampleBlock2D"] * 2, **common)
    else:
        widths = widths or SHAPES_WIDTHS[2]
        unet = UNet2DConditionModel(
            sample_size=256, in_channels=6, block_out_channels=widths, cross_attention_dim=widths[-1],
            down_block_types=["ResnetDownsampleBlock2D"] * 3 + ["SimpleCrossAttnDownBlock2D"] * 2,
            up_block_types=["SimpleCrossAttnUpBlock2D"] * 2 + ["ResnetUpsampleBlock2D"] * 3,
            class_embed_type="timestep", time_embedding_dim=widths[-1], time_embedding_act_fn="gelu",
            resnet_skip_time_act=True, mid_block_scale_factor=IF_II_SCALE, resnet_out_scale_factor=IF_II_SCALE,
            **common)
    unet.set_attn_processor(AttnAddedKVProcessor())
    return unet


SHAPES_WIDTHS = {1: (16, 32, 48, 64), 2: (8, 16, 32, 48, 64)}
# GroupNorm groups: 2, so each group holds 8 (stage I) or 4 (stage II) channels at full size, about as
# many as in IF (IF-I-M 192 / 32 = 6, IF-II-M 128 / 32 = 4). With 8 groups, stage II's 8 full-size
# channels were each normalised on their own, which strips a flat colour to nothing: its UNet learned to
# ignore the upscaled condition (conv_in's weights on it shrank to a twentieth of those on the noisy
# image) and upscaled to 9.9 dB; the same 5000 steps with 2 groups use it (19.7 dB).
SHAPES_GROUPS = {1: 2, 2: 2}

SHAPES_NOTE = ("floydtui's built-in tiny DeepFloyd IF: real IF classes and config switches, about a million UNet "
               "parameters, pretrained by scripts/pretrain_tiny.py on the shapes world (one circle, square, triangle, "
               "diamond or star in one of 8 colours on a plain background) for as long as a shared 2-core CPU "
               "allowed: see docs/builtin-models.md for what it has learned so far.")
