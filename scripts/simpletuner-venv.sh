# Builds .st-venv: Python 3.12 with simpletuner==4.10.1, for tests/test_simpletuner_real.py
#   bash scripts/simpletuner-venv.sh
#   FLOYDTUI_SIMPLETUNER_PY=.st-venv/bin/python .venv/bin/python -m pytest tests/test_simpletuner_real.py
# SimpleTuner goes in with --no-deps (its full requirements are a multi-GB training stack);
# scripts/simpletuner-requirements.txt pins what its config code imports, found by importing it
# (its field registry imports every model family's module, so audio and text libraries come too).
# transformers stays <= 5.22: 4.10.1's parser does not import with later ones. Its config code
# imports torch at the top: PyPI's torch for Python 3.12 is a CUDA build (about 5 GB installed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON312:-}
if [ -z "$PY" ]; then
  if python3.12 -c "" >/dev/null 2>&1; then PY=python3.12
  elif PYENV_VERSION=3.12.1 python -c "" >/dev/null 2>&1; then PY="env PYENV_VERSION=3.12.1 python"
  else echo "no Python 3.12: set PYTHON312 to one" >&2; exit 2; fi
fi
if [ ! -x .st-venv/bin/python ]; then
  $PY -m venv .st-venv
fi
pip=(.st-venv/bin/python -m pip install -q)
"${pip[@]}" --no-deps simpletuner==4.10.1
if ! .st-venv/bin/python -c "import torch" 2>/dev/null; then
  "${pip[@]}" "${FLOYDTUI_ST_TORCH:-torch==2.13.0}"
fi
"${pip[@]}" --no-deps -r scripts/simpletuner-requirements.txt
.st-venv/bin/python -c "import simpletuner.helpers.configuration.loader, simpletuner.helpers.models.deepfloyd.model" \
  && echo "ok: FLOYDTUI_SIMPLETUNER_PY=$PWD/.st-venv/bin/python"
