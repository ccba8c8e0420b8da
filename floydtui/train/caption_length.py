"""Captions longer than IF's 77 T5 tokens: counted per dataset, and a warning naming them.

IFPipeline.encode_prompt (and SimpleTuner) truncate at 77 tokens, so whatever a caption says
after that is never seen by the UNet. Tokens are counted after the pipeline's preprocessing
(`clean_caption`), with the model's own tokenizer when it is on disk (a builtin model, a
local folder, or a hub repo already in the cache); nothing is downloaded for this, and
without a tokenizer the count is an estimate from the words, labelled as one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floydtui.config.flavours import TEXT_MAX_LENGTH
from floydtui.errors import Problem
from floydtui.train.sampling import preprocess

NAMED = 3  # the warning names this many of the long captions' files
TOKENS_PER_WORD = 1.3  # T5's sentencepiece on English captions, for the estimate without a tokenizer


@dataclass
class CaptionTokens:
    """T5 token counts of one dataset's captions (end-of-text token included)."""

    counts: dict[str, int]  # file (relative to the dataset) -> tokens
    source: str  # "the tokenizer of MODEL" or "estimated from the words"
    estimated: bool

    @property
    def over(self) -> list[tuple[str, int]]:
        """(file, tokens) of the captions over 77 tokens, longest first."""
        return sorted(((f, n) for f, n in self.counts.items() if n > TEXT_MAX_LENGTH), key=lambda x: (-x[1], x[0]))

    def to_dict(self) -> dict[str, Any]:
        """For `check --json`: the longest count, how many are over 77, and where the counts come from."""
        return {"max": max(self.counts.values(), default=0), "over_77": len(self.over), "source": self.source,
                "estimated": self.estimated}

    def summary(self) -> str:
        if not self.counts:
            return "captions: none"
        longest = max(self.counts.values())
        word = "~" if self.estimated else ""
        return (f"captions: {word}{longest} T5 tokens at most, {len(self.over)} over {TEXT_MAX_LENGTH} "
                f"({self.source})")


def find_tokenizer(preset: Any) -> tuple[Any | None, str]:
    """The model's T5 tokenizer when it is on disk, and what it is; (None, reason) when it is not."""
    from floydtui.config.flavours import BUILTIN_MODELS

    model_id, stage = preset.base_model, preset.stage
    if model_id in BUILTIN_MODELS:
        from floydtui.train.tiny import build_tokenizer, builtin_model_dir

        folder = builtin_model_dir(model_id) / "tokenizer"
        # an unbuilt builtin's tokenizer is rebuilt the same (a fixed corpus), without building the model
        return (_load(folder) if folder.is_dir() else build_tokenizer()), f"the tokenizer of {model_id}"
    local = Path(model_id).expanduser()
    if local.exists():
        if (local / "tokenizer").is_dir():
            return _load(local / "tokenizer"), f"the tokenizer of {local}"
        return None, f"{local} holds no tokenizer/"
    from floydtui.hub import text_encoder_source
    from floydtui.hub.cache import cached_commit, snapshot_dir

    repo = text_encoder_source(model_id, stage)
    commit = cached_commit(repo, preset.model["revision"] if repo == model_id else "main")
    folder = snapshot_dir(repo, commit) / "tokenizer" if commit else None
    if folder and folder.is_dir() and any(folder.iterdir()):
        return _load(folder), f"the tokenizer of {repo}"
    return None, f"{repo} is not downloaded yet"


def _load(folder: Path):
    from floydtui.lazyimports import ready

    ready()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def estimate_tokens(text: str) -> int:
    """Tokens of a preprocessed caption without a tokenizer: words and punctuation, plus end-of-text."""
    return math.ceil(len(re.findall(r"\w+|[^\w\s]", text)) * TOKENS_PER_WORD) + 1


def count_tokens(captions: dict[str, str], tokenizer: Any | None, source: str, clean_caption: bool) -> CaptionTokens:
    """Token counts of captions by file, with `tokenizer` (None: estimated)."""
    files, texts = list(captions), list(captions.values())
    if tokenizer is not None:
        ids = tokenizer(preprocess(texts, clean_caption), add_special_tokens=True, truncation=False).input_ids
        return CaptionTokens(dict(zip(files, map(len, ids))), source, estimated=False)
    counts = [estimate_tokens(t) for t in preprocess(texts, clean_caption)]
    return CaptionTokens(dict(zip(files, counts)), f"estimated from the words: {source}", estimated=True)


def long_caption_problem(tokens: CaptionTokens, dataset_id: str) -> Problem | None:
    """A warning naming how many captions pass 77 tokens and the first few files; None when none do."""
    over = tokens.over
    if not over:
        return None
    about = "about " if tokens.estimated else ""
    named = ", ".join(f"{f} ({about}{n})" for f, n in over[:NAMED]) + (", ..." if len(over) > NAMED else "")
    return Problem(f"{len(over)} of {len(tokens.counts)} captions are longer than {TEXT_MAX_LENGTH} T5 tokens "
                   f"({tokens.source}): IF truncates them there, and the UNet never sees the rest: {named}",
                   where=f"[[datasets]] {dataset_id}", key="caption_strategy", severity="warning",
                   hint=f"shorten them to under {TEXT_MAX_LENGTH} tokens (about 55 words), putting what matters first; "
                        "diffusers' pipelines and SimpleTuner cut at 77 too")


def add_caption_length(scans: list, preset: Any) -> None:
    """Count each scanned dataset's caption tokens (scan.caption_tokens) and add the long-caption warning."""
    usable = [s for s in scans if s.usable]
    if not usable:
        return
    from floydtui.train.models import quiet_libraries

    quiet_libraries()  # transformers warns of every caption over 77 tokens: the one warning here says it better
    tokenizer, source = find_tokenizer(preset)
    for scan in usable:
        captions = {r.rel: r.caption for r in scan.usable if r.caption is not None}
        scan.caption_tokens = count_tokens(captions, tokenizer, source, preset.training["clean_caption"])
        problem = long_caption_problem(scan.caption_tokens, scan.id)
        if problem:
            scan.problems.append(problem)
