#!/usr/bin/env bash
# The demo, from nothing: trains a LoRA on the built-in tiny DeepFloyd IF model (CPU, < 1 min).
source "$(dirname "$0")/setup.sh"
exec .venv/bin/floydtui run presets/demo.toml "$@"
