"""The command line: help, version, usage errors, check's exit codes (issue 2)."""

import json
import subprocess
import sys

import pytest

from floydtui import __version__
from floydtui.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "floydtui", *args], capture_output=True, text=True)


def test_help_lists_every_command():
    r = run("--help")
    assert r.returncode == 0
    for command in ("run", "check", "scan", "watch", "import", "export", "doctor", "generate"):
        assert f"floydtui {command}" in r.stdout


def test_version():
    assert run("--version").stdout.strip() == f"floydtui {__version__}"


def test_bad_usage_exits_2_with_a_hint():
    r = run("run")
    assert r.returncode == 2 and "the following arguments are required: preset" in r.stderr
    assert "fix:" in r.stderr
    r = run("run", "x.toml", "--max-train-steps", "lots")
    assert r.returncode == 2 and "invalid int value" in r.stderr


def test_check_exit_codes(tmp_path, repo, capsys):
    assert main(["check", str(repo / "presets/demo.toml")]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text((repo / "presets/demo.toml").read_text().replace("lora_rank = 8", "lora_rank = 0"))
    assert main(["check", str(bad)]) == 1
    assert "lora_rank = 0 is out of range" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\n")
    assert main(["check", str(broken)]) == 2
    assert main(["check", str(tmp_path / "missing.toml")]) == 2


def test_check_json_and_set(repo, capsys):
    assert main(["check", str(repo / "presets/demo.toml"), "--json", "--set", "lora_rank=0"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["problems"][0]["key"] == "lora_rank"
    assert main(["check", str(repo / "presets/demo.toml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and [s["title"] for s in out["sections"]][:2] == ["preset", "datasets"]


def test_check_refuses_a_lora_target_that_matches_no_module(repo, capsys):
    """Before any model is loaded: the built-in model's module names, matched as peft matches them."""
    targets = '["to_q", "to_qq", "mid_block.attentions.0.to_k"]'
    assert main(["check", str(repo / "presets/demo.toml"), "--json", "--set", f"lora_target_modules={targets}"]) == 1
    problems = [p for p in json.loads(capsys.readouterr().out)["problems"] if p["key"] == "lora_target_modules"]
    assert len(problems) == 1 and problems[0]["severity"] == "error"
    assert "['to_qq']" in problems[0]["message"] and "builtin:shapes-if-i" in problems[0]["message"]


@pytest.mark.parametrize("item", ["noequals", "=3"])
def test_bad_set_flag(repo, capsys, item):
    assert main(["check", str(repo / "presets/demo.toml"), "--set", item]) == 2
    assert "is not KEY=VALUE" in capsys.readouterr().err
