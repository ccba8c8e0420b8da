"""Device detection: FLOYDTUI_ASSUME_GPU, the probes' parsers, the guide's platform notes."""

import json
import subprocess
import sys

import pytest

from floydtui.errors import FloydError
from floydtui.hardware import devices as dev
from floydtui.hardware.devices import Device, best_device, detect_devices, parse_assumed


def test_assumed_devices_replace_detection(monkeypatch):
    monkeypatch.setattr(dev, "_nvidia_devices", lambda: pytest.fail("detection ran despite the variable"))
    monkeypatch.setenv("FLOYDTUI_ASSUME_GPU", "RTX 4090:24564, A100 80GB:81920")
    found = detect_devices()
    assert [(d.name, d.backend, d.total_mib, d.free_mib, d.index) for d in found] == [
        ("RTX 4090", "cuda", 24564, 24564, 0), ("A100 80GB", "cuda", 81920, 81920, 1)]
    assert best_device(found).name == "A100 80GB"


def test_assumed_name_may_hold_colons_and_names_the_backend():
    got = parse_assumed("NVIDIA: H100:81559,Radeon RX 7900 XTX:24560,Apple M2 Max:98304,AMD MI300X:196608")
    assert [(d.name, d.backend) for d in got] == [
        ("NVIDIA: H100", "cuda"), ("Radeon RX 7900 XTX", "rocm"), ("Apple M2 Max", "mps"), ("AMD MI300X", "rocm")]


@pytest.mark.parametrize("value, bad", [
    ("4090", ["'4090'"]),
    ("RTX 4090:24G", ["'RTX 4090:24G'"]),
    (":1024", ["':1024'"]),
    ("A100:0", ["'A100:0'"]),
    ("A100:-5", ["'A100:-5'"]),
    ("A100:81920,,T4:15360", ["item 2"]),
    ("x,y:abc", ["'x'", "'y:abc'"]),
    ("A100:²", ["'A100:²'"]),  # a digit to str.isdigit, not to int()
])
def test_bad_assumed_values_name_each_bad_item_and_the_format(value, bad):
    with pytest.raises(FloydError) as e:
        parse_assumed(value)
    problems = e.value.problems
    assert len(problems) == len(bad)
    for p, item in zip(problems, bad):
        assert item in p.message and "NAME:MiB" in p.message
        assert p.where == "FLOYDTUI_ASSUME_GPU" and "MiB" in p.hint and p.is_error


def test_bad_assumed_value_is_a_clean_error_from_doctor(repo):
    env = {"FLOYDTUI_ASSUME_GPU": "RTX 4090", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "floydtui", "doctor"], capture_output=True, text=True, env=env,
                          cwd=repo)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "FLOYDTUI_ASSUME_GPU: item 1 ('RTX 4090') is not NAME:MiB" in done.stderr


def test_without_gpus_detection_gives_the_cpu(monkeypatch):
    for probe in ("_nvidia_devices", "_rocm_devices", "_mps_devices"):
        monkeypatch.setattr(dev, probe, lambda: [])
    (only,) = detect_devices()
    assert only.backend == "cpu" and only.total_mib > 0 and 0 < only.free_mib <= only.total_mib
    assert best_device([only]) is only


def test_best_device_prefers_the_largest_gpu_over_the_cpu():
    cpu = Device("cpu", "cpu", 512_000, 500_000, 0)
    small, big = Device("T4", "cuda", 15360, 15000, 0), Device("L40S", "cuda", 46068, 46000, 1)
    assert best_device([cpu, small, big]) is big
    assert best_device([]) is None


def test_nvidia_smi_output_is_parsed():
    text = "0, NVIDIA GeForce RTX 4090, 24564, 23012\n1, NVIDIA A100-SXM4-80GB, 81920, 81000\n\n"
    got = dev.parse_nvidia_smi(text)
    assert [(d.index, d.name, d.total_mib, d.free_mib) for d in got] == [
        (0, "NVIDIA GeForce RTX 4090", 24564, 23012), (1, "NVIDIA A100-SXM4-80GB", 81920, 81000)]


def test_rocm_smi_json_is_parsed():
    text = json.dumps({
        "card1": {"Card series": "AMD Instinct MI300X", "VRAM Total Memory (B)": str(192 * 1024 ** 3),
                  "VRAM Total Used Memory (B)": str(2 * 1024 ** 3)},
        "card0": {"Card model": "Radeon RX 7900 XTX", "VRAM Total Memory (B)": str(24 * 1024 ** 3),
                  "VRAM Total Used Memory (B)": "0"},
        "system": {"Driver version": "6.7"},
    })
    got = dev.parse_rocm_smi(text)
    assert [(d.index, d.name, d.backend, d.total_mib, d.free_mib) for d in got] == [
        (0, "Radeon RX 7900 XTX", "rocm", 24576, 24576), (1, "AMD Instinct MI300X", "rocm", 196608, 194560)]
    assert dev.parse_rocm_smi("not json") == []


def test_cuda_visible_devices_by_index_is_honoured(monkeypatch):
    gpus = [Device("A", "cuda", 100, 100, 0), Device("B", "cuda", 200, 200, 1), Device("C", "cuda", 300, 300, 2)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert [(d.name, d.index) for d in dev._visible(gpus)] == [("C", 0), ("A", 1)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert dev._visible(gpus) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f2c")
    assert dev._visible(gpus) == gpus


def test_xformers_is_not_offered_on_amd_apple_or_cpu(monkeypatch):
    for backend, word in (("rocm", "AMD"), ("mps", "Apple")):
        ok, why = dev.xformers_available(Device("x", backend, 24576, 24576))
        assert not ok and word in why
    assert dev.xformers_available(None)[0] is False
    assert dev.xformers_available(Device("cpu", "cpu", 1, 1))[0] is False
    real = dev.importlib.util.find_spec
    monkeypatch.setattr(dev.importlib.util, "find_spec", lambda name: None if name == "xformers" else real(name))
    ok, why = dev.xformers_available(Device("RTX", "cuda", 24576, 24576))
    assert not ok and "not installed" in why


def test_xformers_preset_on_amd_is_an_error_and_on_cpu_a_warning():
    (amd,) = dev.platform_problems(Device("Radeon", "rocm", 24576, 24576), "xformers")
    assert amd.is_error and amd.key == "attention_mechanism" and "sdpa" in amd.hint
    (cpu,) = dev.platform_problems(Device("cpu", "cpu", 1, 1), "xformers")
    assert not cpu.is_error
    assert dev.platform_problems(Device("Radeon", "rocm", 24576, 24576), "sdpa") == []


@pytest.mark.parametrize("version, fails", [((2, 5), True), ((1, 13), True), (None, True), ((2, 6), False),
                                            ((3, 0), False)])
def test_mps_needs_torch_2_6(monkeypatch, version, fails):
    monkeypatch.setattr(dev, "torch_version", lambda: version)
    problems = dev.platform_problems(Device("Apple M2 GPU", "mps", 32768, 30000))
    assert bool(problems) == fails
    if fails:
        assert "2.6" in problems[0].message and "torch>=2.6" in problems[0].hint and problems[0].is_error
