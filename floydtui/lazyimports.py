"""The first import of transformers and diffusers, once, under one lock.

Both packages fill their namespaces lazily (`_LazyModule`): when two threads touch them for
the first time at once (the wizard's dataset scan and its review check, say), one of them can
find a name not there yet and fail with "cannot import name 'T5TokenizerFast' from
'transformers'" (a known race of lazy modules; CPython's import lock is per module, not per
attribute). Every floydtui path that may run in a worker thread calls `ready()` before its own
`from transformers/diffusers import ...`: the names it needs are resolved under this lock.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_READY = False


def ready() -> None:
    """Import the transformers and diffusers names floydtui uses, exactly once per process, under a lock."""
    global _READY
    if _READY:
        return
    with _LOCK:
        if _READY:
            return
        # every lazy name a worker thread may ask for; after this, they are plain module attributes
        from diffusers import IFPipeline, IFSuperResolutionPipeline, UNet2DConditionModel  # noqa: F401
        from diffusers.utils import is_bs4_available, is_ftfy_available  # noqa: F401
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: F401
        from transformers import AutoTokenizer, T5Config, T5EncoderModel, T5TokenizerFast  # noqa: F401

        _READY = True
