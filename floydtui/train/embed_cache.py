"""The text-embed cache: every prompt through T5 once, then never again.

One safetensors file per unique prompt, named by a hash of (encoder identity, max length,
dtype, preprocessing, prompt), so a cache folder can be shared between runs, presets and
models without mix-ups, and a changed `clean_caption` never reuses an entry. An entry holds
`prompt_embeds` [77, D] exactly as IFPipeline.encode_prompt gives them to the UNet (the
caption run through the pipeline's own preprocessing, 77 tokens, T5 given the attention
mask), stored in the training dtype (bf16 by default: half a float32 `torch.save`), with the
prompt, the preprocessing, its token count and a sha256 of the tensor bytes in the header.
All 77 rows are kept: T5's outputs at padded positions are not zero, and IF's UNet attends
to them without a mask, so dropping them would train on a conditioning that inference never
sees.

Reading checks the header and the hash; a truncated or altered entry is reported and
encoded again. Entries are written atomically, so a killed run never leaves a half file.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable

from floydtui.config.flavours import TEXT_MAX_LENGTH
from floydtui.errors import FloydError
from floydtui.fsutil import atomic_path
from floydtui.train.models import load_text_encoder
from floydtui.train.sampling import encode_prompts, preprocessing_name

FORMAT = "floydtui-text-embed-v2"  # v2: the preprocessing is part of the key and the header


def encoder_identity(model_dir: Path) -> str:
    """A short hash naming the text encoder: its config, tokenizer and weight files.

    Weight files are named by size and a hash of their first and last MiB, which tells
    checkpoints apart without reading gigabytes. Independent of the folder's path.
    """
    h = hashlib.sha256()
    for sub in ("text_encoder", "tokenizer"):
        for f in sorted((model_dir / sub).glob("*")):
            if not f.is_file():
                continue
            h.update(f"{sub}/{f.name}:{f.stat().st_size}".encode())
            if f.suffix in (".json", ".model", ".txt"):
                h.update(f.read_bytes())
            else:
                with open(f, "rb") as fh:
                    h.update(fh.read(1 << 20))
                    fh.seek(max(0, f.stat().st_size - (1 << 20)))
                    h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


class TextEmbedCache:
    """Cached prompt embeddings in one folder, for one encoder, dtype and preprocessing (`clean_caption`)."""

    def __init__(self, folder: Path, encoder_id: str, dtype, max_length: int = TEXT_MAX_LENGTH, *,
                 clean_caption: bool = True) -> None:
        self.folder = Path(folder)
        self.encoder_id = encoder_id
        self.dtype = dtype
        self.max_length = max_length
        self.clean_caption = clean_caption
        self.preprocessing = preprocessing_name(clean_caption)
        self._memo: dict[str, Any] = {}

    def key(self, prompt: str) -> str:
        text = json.dumps([self.encoder_id, self.max_length, str(self.dtype), self.preprocessing, prompt])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, prompt: str) -> Path:
        k = self.key(prompt)
        return self.folder / k[:2] / f"{k}.safetensors"

    def save(self, prompt: str, embeds, tokens: int) -> Path:
        """Write one entry ([77, D]) atomically."""
        from safetensors.torch import save_file

        t = embeds.detach().to("cpu", self.dtype).contiguous()
        meta = {"format": FORMAT, "prompt": prompt, "preprocessing": self.preprocessing,
                "encoder": self.encoder_id, "max_length": str(self.max_length),
                "dtype": str(self.dtype), "tokens": str(tokens), "sha256": _tensor_sha256(t)}
        with atomic_path(self.path(prompt)) as tmp:
            save_file({"prompt_embeds": t}, str(tmp), metadata=meta)
        return self.path(prompt)

    def read(self, prompt: str):
        """The entry's tensor, or None when missing; raises CacheEntryError when damaged."""
        from safetensors import safe_open

        path = self.path(prompt)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                t = f.get_tensor("prompt_embeds")
        except Exception as e:  # safetensors raises several types for cut or garbled files
            raise CacheEntryError(path, f"unreadable ({type(e).__name__}: {e})") from None
        if meta.get("format") != FORMAT or meta.get("prompt") != prompt or \
                meta.get("preprocessing") != self.preprocessing:
            raise CacheEntryError(path, "its header does not match the prompt it is named for")
        if t.dtype != self.dtype or t.shape[0] != self.max_length or meta.get("sha256") != _tensor_sha256(t):
            raise CacheEntryError(path, "its content hash does not match (altered or corrupted)")
        return t

    def get(self, prompt: str):
        """The cached embeds of a prompt ([77, D]); held in memory after the first read."""
        t = self._memo.get(prompt)
        if t is None:
            t = self.read(prompt)
            if t is None:
                raise FloydError.one(f"prompt {prompt!r} is not in the text-embed cache {self.folder}",
                                     hint="this is a bug: every caption is cached before training")
            self._memo[prompt] = t
        return t

    def batch(self, prompts: Iterable[str], device=None, dtype=None):
        """[B, 77, D] embeds for a list of prompts."""
        import torch

        return torch.stack([self.get(p) for p in prompts]).to(device=device, dtype=dtype)

    def missing(self, prompts: Iterable[str], events=None) -> list[str]:
        """Prompts with no valid entry; damaged entries are reported (warning event) and counted."""
        out = []
        for p in prompts:
            try:
                if self.read(p) is None:
                    out.append(p)
            except CacheEntryError as e:
                if events:
                    events.warning(f"text-embed cache entry {e.path.name} for {p!r} is {e.reason}: encoding it "
                                   "again", hint="nothing to do; if this repeats, check the disk")
                e.path.unlink(missing_ok=True)
                out.append(p)
        return out


class CacheEntryError(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _tensor_sha256(t) -> str:
    import torch

    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def place_encoder(encoder, placement: str, events=None):
    """Put T5 where `text_encoder_placement` says; returns the device inputs go to.

    gpu: all on the GPU. stream: weights stay in CPU memory and each layer is moved to the
    GPU as it runs (accelerate's cpu_offload), for GPUs that cannot hold T5-XXL. cpu: on
    the CPU. auto: gpu when it fits with room to spare, else stream; cpu without a GPU.
    """
    import torch

    cuda = torch.cuda.is_available()
    if placement in ("gpu", "stream") and not cuda:
        raise FloydError.one(f"text_encoder_placement = {placement!r} needs a CUDA GPU, and none is visible",
                             key="text_encoder_placement", hint='set text_encoder_placement = "cpu" or "auto"')
    if placement == "auto":
        if not cuda:
            placement = "cpu"
        else:
            need = sum(p.numel() * p.element_size() for p in encoder.parameters())
            free, _ = torch.cuda.mem_get_info()
            placement = "gpu" if need * 1.25 < free else "stream"
            if placement == "stream" and events:
                events.warning(f"T5 ({need / 2**30:.1f} GiB) does not fit in the GPU's free "
                               f"{free / 2**30:.1f} GiB: streaming its layers from CPU memory (slower)",
                               hint="each batch moves T5's weights to the GPU once, so a larger embed_batch_size "
                                    "is much faster (measured on an H200: 95 prompts/s at 256, 6.5 at 16); "
                                    'text_encoder_placement = "cpu" keeps it off the GPU entirely')
    if placement == "cpu":
        return torch.device("cpu")
    device = torch.device("cuda", torch.cuda.current_device())
    if placement == "gpu":
        encoder.to(device)
    else:
        from accelerate import cpu_offload

        cpu_offload(encoder, execution_device=device)
    return device


def encoder_dtype(placement: str):
    """T5 runs in bf16 on a GPU (fp16 overflows in T5) and fp32 on the CPU."""
    import torch

    if placement == "cpu" or not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32


def _save_chunk(cache: TextEmbedCache, prompts: list[str], embeds, tokens: list[int]) -> int:
    for prompt, e, n in zip(prompts, embeds, tokens):
        cache.save(prompt, e, n)
    return len(prompts)


def encode_into(cache: TextEmbedCache, prompts: list[str], tokenizer, encoder, device, batch_size: int,
                progress=None) -> None:
    """Encode `prompts` `batch_size` at a time and write each one's entry; progress(done, rate) after each batch.

    A batch's entries are written (hashed, serialised, synced) by a thread while T5 encodes the
    next batch: on a fast GPU the writes took as long as the encoding (bench/results/gpu.md).
    One batch is in flight at a time, and each entry is still written atomically.
    """
    start, done = time.perf_counter(), 0

    def written(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, done / max(time.perf_counter() - start, 1e-9))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-cache-writer") as writer:
        pending = None
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            embeds, tokens = encode_prompts(tokenizer, encoder, chunk, device, cache.clean_caption)
            embeds = embeds.to("cpu", cache.dtype)
            if pending is not None:
                written(pending.result())
            pending = writer.submit(_save_chunk, cache, chunk, embeds, tokens)
        if pending is not None:
            written(pending.result())


def build_cache(cache: TextEmbedCache, prompts: list[str], model_dir: Path, *, placement: str, batch_size: int,
                variant: str | None = None, events=None, rank: int = 0, world_size: int = 1,
                barrier=None) -> dict[str, Any]:
    """Encode every prompt not yet cached, `batch_size` at a time, this rank's share of them.

    Each process encodes prompts[rank::world_size] of the missing ones, then waits at
    `barrier` for the others. T5 is loaded only when something is missing and is freed
    before returning. Returns counts for the run's log.
    """
    import torch

    prompts = list(dict.fromkeys(prompts))
    missing = cache.missing(prompts, events if rank == 0 else None)
    if barrier:  # every rank has its list before any rank writes, so the shares agree
        barrier()
    mine = missing[rank::world_size]
    # progress counts every prompt, the reused ones as done: a warm cache reads "14/14", not "0/0"
    total, reused = len(prompts), len(prompts) - len(missing)
    if events:
        events.emit("progress", phase="embed_cache", done=reused, total=total, rate=0.0)
    if mine:
        device_kind = placement if placement != "auto" else ("gpu" if torch.cuda.is_available() else "cpu")
        tokenizer, encoder = load_text_encoder(model_dir, encoder_dtype(device_kind), variant)
        device = place_encoder(encoder, placement, events)

        def progress(done: int, rate: float) -> None:
            if events:  # rank 0 speaks for all: the shares are equal within one prompt
                events.emit("progress", phase="embed_cache", done=reused + min(len(missing), done * world_size),
                            total=total, rate=round(rate * world_size, 2))

        encode_into(cache, mine, tokenizer, encoder, device, batch_size, progress)
        del encoder, tokenizer
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if barrier:
        barrier()
    return {"prompts": total, "encoded": len(missing), "reused": reused}
