#!/usr/bin/env bash
# The tests, from nothing: `bash scripts/test.sh` (extra arguments go to pytest).
source "$(dirname "$0")/setup.sh"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
