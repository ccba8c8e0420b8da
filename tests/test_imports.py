"""Headless commands never load Textual, and load torch only when they do model work (DESIGN.md layers).

Each command runs in a fresh interpreter, so nothing another test imported can hide or fake a load.
"""

import json
import subprocess
import sys

import pytest
from helpers import REPO, WAIT_S

HEAVY = ("textual", "torch", "diffusers", "transformers")

PROBE = """
import contextlib, importlib, io, json, sys
from floydtui.cli import _module_name, main

def loaded():
    return sorted(m for m in {heavy!r} if m in sys.modules)

seen = {{}}
importlib.import_module("floydtui.commands." + _module_name({command!r}))
seen["import"] = loaded()
for argv in {runs!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # --help exits from argparse
            code = e.code
    seen[" ".join(argv)] = [code, loaded()]
print(json.dumps(seen))
"""

# The command lines run after the import: --help for each, and the whole command where it is cheap.
RUNS = {
    "check": [["check", "--help"], ["check", "presets/demo.toml", "--json"]],
    "scan": [["scan", "--help"], ["scan", "presets/demo.toml", "--json"]],
    "import_": [["import", "--help"]],
    "export": [["export", "--help"]],
    "doctor": [["doctor", "--help"], ["doctor", "--json"]],
    "run": [["run", "--help"]],
    "generate": [["generate", "--help"], ["generate", "--base", "b", "--prompt", "p", "-o", "o", "--help"]],
}


@pytest.mark.parametrize("module", sorted(RUNS))
def test_a_headless_command_loads_neither_textual_nor_torch(module):
    command = "import" if module == "import_" else module
    code = PROBE.format(heavy=HEAVY, command=command, runs=RUNS[module])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=WAIT_S,
                          env={"PATH": "/usr/bin:/bin", "FLOYDTUI_ASSUME_GPU": "L4:23034", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen.pop("import") == [], f"importing floydtui.commands.{module} loads them"
    for argv, (code, heavy) in seen.items():
        assert code in (0, None), f"`floydtui {argv}` exited {code}"
        if module in ("check", "scan") and "--help" not in argv:
            # counting a dataset's caption tokens runs diffusers' own IF caption preprocessing (and
            # so torch): allowed for the whole command, never Textual
            heavy = [m for m in heavy if m not in ("torch", "diffusers", "transformers")]
        assert heavy == [], f"`floydtui {argv}` loads them"


def test_the_top_level_help_loads_neither():
    """`floydtui --help` stays instant: the cli, config and events layers load nothing heavy."""
    code = ("import sys, floydtui.config, floydtui.config.simpletuner, floydtui.cli, floydtui.events\n"
            "try:\n    floydtui.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=WAIT_S)
    assert done.returncode == 0 and done.stderr.strip() == "[]", done.stderr
