"""A hub cache laid out exactly as huggingface_hub lays it out, holding a tiny IF model under a
DeepFloyd repo id: fetch_model finds it offline and diffusers loads what it returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import COMMIT, folder_files, lay_out

REPO_ID = "DeepFloyd/IF-I-M-v1.0"


def build_tiny_if(folder: Path) -> None:
    """A miniature IF stage I pipeline (DESIGN.md section 9), saved with fp16-variant file names."""
    import torch
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnAddedKVProcessor
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=3, out_channels=6, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"], cross_attention_dim=32,
        encoder_hid_dim=32, attention_head_dim=4, addition_embed_type="text", addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu",
        norm_num_groups=4)
    unet.set_attn_processor(AttnAddedKVProcessor())
    text_encoder = T5EncoderModel(T5Config(vocab_size=64, d_model=32, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(["a photo of a corgi wearing a red hat"] * 4, trainers.UnigramTrainer(
        vocab_size=40, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tokenizer = T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                extra_ids=0)
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="learned_range", thresholding=True,
                              dynamic_thresholding_ratio=0.95, sample_max_value=1.0)
    IFPipeline(tokenizer=tokenizer, text_encoder=text_encoder, unet=unet, scheduler=scheduler, safety_checker=None,
               feature_extractor=None, watermarker=None, requires_safety_checker=False
               ).save_pretrained(folder, variant="fp16")
    # The real repo's model_index.json names the safety checker, watermarker and feature extractor.
    index = json.loads((folder / "model_index.json").read_text())
    index.update(safety_checker=["deepfloyd_if", "IFSafetyChecker"], watermarker=["deepfloyd_if", "IFWatermarker"],
                 feature_extractor=["transformers", "CLIPImageProcessor"], requires_safety_checker=True)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    (folder / "feature_extractor").mkdir()
    (folder / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "image_mean": [0.4815, 0.4578, 0.4082], "image_std": [0.2686, 0.2613, 0.2758], "resample": 3,
        "size": 224}))


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("tiny-if") / "model"
    build_tiny_if(folder)
    return folder_files(folder)


@pytest.mark.slow
def test_fetch_model_offline_returns_a_snapshot_diffusers_loads(tiny_files, hub_cache):
    from floydtui.hub import fetch_model
    from floydtui.train.models import load_pipeline, weight_variant

    # an earlier full download left the safety checker in the cache: it must not be loaded
    files = dict(tiny_files)
    files["safety_checker/config.json"] = b"{not json"
    lay_out(hub_cache, REPO_ID, files)
    path = fetch_model(REPO_ID, stage=1)
    assert path == hub_cache / "models--DeepFloyd--IF-I-M-v1.0" / "snapshots" / COMMIT
    assert weight_variant(path, None) == "fp16"
    # floydtui's own loader: the broken safety checker is never read
    pipe = load_pipeline(path, 1, text_encoder=True)
    assert pipe.safety_checker is None and pipe.watermarker is None
    assert pipe.unet.config.in_channels == 3 and pipe.text_encoder is not None
    assert type(pipe.tokenizer).__name__.startswith("T5Tokenizer")


@pytest.mark.slow
def test_offline_fetch_writes_nothing_to_the_cache(tiny_files, hub_cache):
    from floydtui.hub import fetch_model

    storage = lay_out(hub_cache, REPO_ID, tiny_files)
    before = sorted(p.relative_to(hub_cache) for p in hub_cache.rglob("*"))
    fetch_model(REPO_ID, stage=1)
    assert sorted(p.relative_to(hub_cache) for p in hub_cache.rglob("*")) == before
    assert (storage / "refs" / "main").read_text() == COMMIT


@pytest.mark.slow
def test_offline_missing_unet_weights_names_the_file(tiny_files, hub_cache):
    from floydtui.errors import FloydError
    from floydtui.hub import fetch_model

    files = {k: v for k, v in tiny_files.items() if not k.startswith("unet/diffusion_pytorch_model")}
    lay_out(hub_cache, REPO_ID, files)
    with pytest.raises(FloydError) as e:
        fetch_model(REPO_ID, stage=1)
    text = e.value.format()
    assert REPO_ID in text and "unet/diffusion_pytorch_model.fp16.safetensors" in text
    assert "HF_HUB_OFFLINE" in text and "hf download" in text


def test_offline_missing_shard_of_an_index_is_named(hub_cache):
    from floydtui.errors import FloydError
    from floydtui.hub import fetch_model

    index = json.dumps({"metadata": {}, "weight_map": {"a": "model.fp16-00001-of-00002.safetensors",
                                                        "b": "model.fp16-00002-of-00002.safetensors"}}).encode()
    lay_out(hub_cache, REPO_ID, {
        "model_index.json": json.dumps({"_class_name": "IFPipeline", "unet": ["diffusers", "U"],
                                        "text_encoder": ["transformers", "T"], "tokenizer": ["transformers", "T"],
                                        "scheduler": ["diffusers", "S"]}).encode(),
        "unet/config.json": b"{}", "unet/diffusion_pytorch_model.fp16.safetensors": b"u" * 20_000,
        "scheduler/scheduler_config.json": b"{}", "tokenizer/tokenizer_config.json": b"{}",
        "text_encoder/config.json": b"{}", "text_encoder/model.safetensors.index.fp16.json": index,
        "text_encoder/model.fp16-00001-of-00002.safetensors": b"t" * 20_000})
    with pytest.raises(FloydError) as e:
        fetch_model(REPO_ID, stage=1)
    assert "text_encoder/model.fp16-00002-of-00002.safetensors" in e.value.format()
    # the feature extractor is not named by this model_index.json, so it is not asked for
    assert "feature_extractor" not in e.value.format()
