"""`floydtui doctor` and the memory section of `floydtui check`."""

import json
import subprocess
import sys

import pytest

from floydtui.cli import main
from floydtui.config.flavours import FLAVOURS
from floydtui.config.preset import load_preset, preset_from_dict
from floydtui.hardware import report
from floydtui.hardware.devices import Device
from floydtui.hardware.speed import GPU_STEP_OVERHEAD_S


def _xl(**training):
    return preset_from_dict({
        "model": {"model_flavour": "i-xlarge-4.3b"},
        "training": training,
        "datasets": [{"id": "images", "instance_data_dir": "."}],
    })


def test_doctor_json_shape(repo):
    done = subprocess.run([sys.executable, "-m", "floydtui", "doctor", "--json"], capture_output=True, text=True,
                          cwd=repo, env={"FLOYDTUI_ASSUME_GPU": "RTX 4090:24564,RTX 3060:12288",
                                         "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert set(data) == {"devices", "estimates", "builtin_models"}
    assert {b["id"]: b["state"] for b in data["builtin_models"]}["builtin:shapes-if-i"] == "shipped"
    assert data["devices"] == [
        {"name": "RTX 4090", "backend": "cuda", "total_mib": 24564, "free_mib": 24564},
        {"name": "RTX 3060", "backend": "cuda", "total_mib": 12288, "free_mib": 12288}]
    rows = data["estimates"]
    assert [(r["flavour"], r["method"]) for r in rows] == [(f, m) for f in FLAVOURS for m in ("lora", "full")]
    for r in rows:
        assert set(r) == {"flavour", "method", "peak_mib", "phases", "verdict", "advice", "time"}
        assert r["time"]["step_s"] > 0 and r["time"]["steps"] == 1000
        assert r["time"]["total_s"] == pytest.approx(1000 * r["time"]["step_s"], rel=0.01)
        assert "RTX 4090" in r["time"]["basis"]
        assert set(r["phases"]) == {"embed_cache", "train", "validation"}
        assert r["peak_mib"] == max(r["phases"].values())
        assert r["verdict"] in ("fits", "tight", "does_not_fit")
        for a in r["advice"]:
            assert set(a) == {"change", "peak_mib"} and a["peak_mib"] < r["peak_mib"]
        assert bool(r["advice"]) == (r["verdict"] != "fits")
    by = {(r["flavour"], r["method"]): r for r in rows}
    assert by[("i-medium-400m", "lora")]["verdict"] == "fits"  # on the 24G card, the best device
    assert by[("i-xlarge-4.3b", "lora")]["verdict"] == "fits"  # measured on an H200: 13.6 GiB allocated at batch 4
    assert by[("i-xlarge-4.3b", "full")]["verdict"] == "does_not_fit"
    # counted work: the XL's step is 12x the medium's FLOPs, beside the same launch overhead (0.2 s a step,
    # measured on an H200, where it hid the FLOPs of every flavour)
    xl, medium = (by[(f, "lora")]["time"]["step_s"] - GPU_STEP_OVERHEAD_S for f in ("i-xlarge-4.3b", "i-medium-400m"))
    assert xl > 10 * medium
    assert by[("i-medium-400m", "full")]["time"]["step_s"] > by[("i-medium-400m", "lora")]["time"]["step_s"]


def test_doctor_human_output(monkeypatch, capsys):
    monkeypatch.setenv("FLOYDTUI_ASSUME_GPU", "Radeon RX 7900 XTX:24560")
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Radeon RX 7900 XTX" in out and "rocm" in out
    assert "not available on AMD" in out
    for name in FLAVOURS:
        assert name in out
    assert "to fit i-xlarge-4.3b full" in out


def test_check_on_the_demo_preset_passes_on_a_cpu(repo, monkeypatch):
    monkeypatch.setattr(report, "detect_devices", lambda: [Device("a laptop CPU", "cpu", 8192, 6000)])
    section = report.check_memory(load_preset(repo / "presets" / "demo.toml")).section()
    assert section.ok, [p.format() for p in section.problems]
    assert section.data["verdict"] == "fits" and section.data["device"]["backend"] == "cpu"


def test_check_memory_section_of_the_real_command_has_no_error_for_the_demo(repo):
    done = subprocess.run([sys.executable, "-m", "floydtui", "check", "presets/demo.toml", "--json"],
                          capture_output=True, text=True, cwd=repo, env={"PATH": "/usr/bin:/bin",
                                                                          "HF_HUB_OFFLINE": "1"})
    sections = {s["title"]: s for s in json.loads(done.stdout)["sections"]}
    memory = sections["memory"]
    assert not [p for p in memory["problems"] if p["severity"] == "error"], memory["problems"]


def test_does_not_fit_is_an_error_on_a_gpu_with_the_fix(monkeypatch):
    monkeypatch.setenv("FLOYDTUI_ASSUME_GPU", "RTX 4060:8188")
    section = report.check_memory(_xl()).section()
    assert not section.ok
    (err,) = [p for p in section.problems if p.is_error]
    assert "does not fit" in err.message and "RTX 4060" in err.message
    assert "--set" in err.hint and err.key
    assert section.data["verdict"] == "does_not_fit" and section.data["advice"]


def test_without_a_gpu_a_real_flavour_gets_a_warning_and_no_ram_verdict(monkeypatch):
    monkeypatch.setattr(report, "detect_devices", lambda: [Device("a laptop CPU", "cpu", 8192, 6000)])
    section = report.check_memory(_xl()).section()
    assert section.ok
    messages = [p.message for p in section.problems]
    assert any(m.startswith("no GPU found: training i-xlarge-4.3b here would take about") for m in messages)
    assert not any("fit" in m for m in messages)


def test_tight_is_a_warning(monkeypatch):
    from floydtui.hardware.estimate import estimate

    peak = estimate(_xl()).peak_mib
    monkeypatch.setenv("FLOYDTUI_ASSUME_GPU", f"RTX 4090:{int(peak * 1.05)}")  # 5% to spare
    section = report.check_memory(_xl()).section()
    assert section.ok and section.data["verdict"] == "tight"
    assert any(p.message.startswith("tight") and not p.is_error for p in section.problems)


def test_xformers_on_an_assumed_amd_card_fails_check(monkeypatch):
    monkeypatch.setenv("FLOYDTUI_ASSUME_GPU", "AMD Instinct MI300X:196608")
    section = report.check_memory(_xl(attention_mechanism="xformers")).section()
    assert not section.ok
    assert any(p.key == "attention_mechanism" and p.is_error for p in section.problems)


def test_a_bad_assumed_value_is_a_problem_in_the_section(monkeypatch):
    monkeypatch.setenv("FLOYDTUI_ASSUME_GPU", "RTX 4090=24G")
    section = report.check_memory(_xl()).section()
    assert not section.ok and "NAME:MiB" in section.problems[0].message
