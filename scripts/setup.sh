# Sourced by scripts/demo.sh and scripts/test.sh: a virtual environment with everything,
# built from nothing on a fresh machine and reused after that.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.floydtui-installed
want=$(cat pyproject.toml | sha1sum | cut -c1-16)
if [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    # Without a GPU, take the CPU build first: a plain `torch` requirement pulls a multi-GB
    # CUDA build. FLOYDTUI_TORCH chooses another (e.g. a CUDA build on a GPU box).
    if command -v nvidia-smi >/dev/null 2>&1; then
      .venv/bin/python -m pip install -q "${FLOYDTUI_TORCH:-torch>=2.4}"
    else
      .venv/bin/python -m pip install -q "${FLOYDTUI_TORCH:-torch==2.13.0}"
    fi
  fi
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > $stamp
fi
export PATH="$PWD/.venv/bin:$PATH"
