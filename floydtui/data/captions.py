"""Captions: caption_strategy filename / textfile / instanceprompt, and prepend_instance_prompt."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Callable

from floydtui.data.pipeline import DatasetSettings


def filename_caption(rel: str) -> str:
    """The file's stem with underscores as spaces: "a_red_circle.png" -> "a red circle"."""
    stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]  # string ops: this runs once per file per scan
    if not stem.isascii():
        # A name that is not valid UTF-8 holds surrogates, which no tokenizer or hash can encode.
        stem = stem.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(stem.replace("_", " ").split())


def sidecar_of(rel: str) -> str:
    """The caption file beside an image: "cats/tom.jpg" -> "cats/tom.txt"."""
    return str(PurePosixPath(rel).with_suffix(".txt"))


def caption_for(rel: str, s: DatasetSettings, read_sidecar: Callable[[str], dict]) -> tuple[str, str]:
    """(final caption, note) for an image; the note says what was used when a caption file failed."""
    note = ""
    if s.caption_strategy == "instanceprompt":
        return s.instance_prompt, note
    if s.caption_strategy == "textfile":
        txt = sidecar_of(rel)
        entry = read_sidecar(txt)
        text = " ".join(entry.get("text", "").split())  # one line: newlines and runs of spaces collapse
        if not text:
            why = entry.get("error") or "empty"
            caption = filename_caption(rel)
            note = f"caption file {PurePosixPath(txt).name} is {why}: used the filename caption {caption!r}"
        else:
            caption = text
    else:
        caption = filename_caption(rel)
    if s.prepend_instance_prompt and s.instance_prompt:
        caption = f"{s.instance_prompt} {caption}".strip()
    return caption, note
