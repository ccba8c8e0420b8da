"""Several threads touching transformers and diffusers for the first time at once (the wizard's workers)."""

from __future__ import annotations

import subprocess
import sys

# In a fresh interpreter where, as in the wizard, floydtui's own modules are loaded but neither
# transformers nor diffusers is, 8 threads at once do what the wizard's workers do first: clean
# captions (diffusers' preprocessing) and load a T5 tokenizer (transformers).
SCRIPT = r"""
import sys, threading
from floydtui.train.sampling import preprocess
from floydtui.train.tiny import build_tokenizer
assert "transformers" not in sys.modules and "diffusers" not in sys.modules
barrier = threading.Barrier(8)
errors = []

def work(i):
    barrier.wait()
    try:
        if i % 2:
            assert preprocess(["A Red Circle."], True) == ["a red circle."]
        else:
            assert build_tokenizer()("a red circle").input_ids[-1] == 1
    except BaseException as e:  # noqa: BLE001 - every failure is the finding
        errors.append(f"thread {i}: {type(e).__name__}: {e}")

threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("\n".join(errors) or "ok")
sys.exit(1 if errors else 0)
"""


def test_first_imports_from_eight_threads_at_once_all_succeed():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout[-2000:] + proc.stderr[-2000:]


def test_ready_resolves_the_lazy_names_once():
    from floydtui import lazyimports

    lazyimports.ready()
    import transformers

    # after ready(), the names are real attributes of the module, not left for _LazyModule.__getattr__
    assert "T5TokenizerFast" in vars(transformers) and lazyimports._READY
