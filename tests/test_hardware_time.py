"""The time estimate (counted FLOPs over a device's rate) and what a machine without a GPU is told."""

import asyncio

import pytest

from floydtui.config.preset import preset_from_dict
from floydtui.hardware import report
from floydtui.hardware.archdata import arch
from floydtui.hardware.devices import Device
from floydtui.hardware.speed import GPU_BF16_TFLOPS, GPU_STEP_OVERHEAD_S, duration, estimate_time, gpu_peak_tflops, step_flops

CPU = Device("a laptop CPU", "cpu", 16384, 12000)


def make(flavour="i-medium-400m", model=None, **training):
    return preset_from_dict({
        "model": {"model_flavour": flavour, **({"pretrained_model_name_or_path": model} if model else {})},
        "training": training,
        "datasets": [{"id": "images", "instance_data_dir": "."},
                     {"id": "text-embeds", "dataset_type": "text_embeds", "default": True}],
    })


@pytest.mark.parametrize("name, peak", [("NVIDIA GeForce RTX 4090", 165), ("NVIDIA H100 80GB HBM3", 989),
                                        ("NVIDIA H100 PCIe", 756), ("NVIDIA A100-SXM4-80GB", 312),
                                        ("NVIDIA RTX A6000", 155), ("NVIDIA GeForce RTX 3090 Ti", 80),
                                        ("NVIDIA L40S", 362), ("NVIDIA L4", 121)])
def test_gpu_table_matches_the_names_drivers_report(name, peak):
    assert gpu_peak_tflops(name) == peak


def test_an_unknown_card_is_said_to_be_assumed():
    assert gpu_peak_tflops("Mystery Accelerator 9000") is None
    t = estimate_time("i-medium-400m", batch=4, resolution=64, checkpointing=False, steps=1000,
                      device=Device("Mystery Accelerator 9000", "cuda", 24576, 24576))
    assert "not in floydtui's table" in t.basis


def test_step_time_follows_the_counted_work():
    a100 = Device("NVIDIA A100-SXM4-80GB", "cuda", 81920, 81920)
    one = estimate_time("i-medium-400m", batch=4, resolution=64, checkpointing=False, steps=1000, device=a100)
    assert one.step_s == pytest.approx(4 * arch("i-medium-400m")["train_flops_per_sample"] / (one.rate_tflops * 1e12)
                                       + GPU_STEP_OVERHEAD_S)
    assert one.total_s == pytest.approx(1000 * one.step_s)
    ckpt = estimate_time("i-medium-400m", batch=4, resolution=64, checkpointing=True, steps=1000, device=a100)
    xl = estimate_time("i-xlarge-4.3b", batch=4, resolution=64, checkpointing=False, steps=1000, device=a100)
    h100 = estimate_time("i-medium-400m", batch=4, resolution=64, checkpointing=False, steps=1000,
                         device=Device("NVIDIA H100 80GB HBM3", "cuda", 81920, 81920))
    assert one.step_s < ckpt.step_s < 1.5 * one.step_s  # the recomputed forward
    assert xl.step_s - GPU_STEP_OVERHEAD_S > 10 * (one.step_s - GPU_STEP_OVERHEAD_S)  # 4.3B vs 372M parameters
    assert h100.step_s - GPU_STEP_OVERHEAD_S == pytest.approx((one.step_s - GPU_STEP_OVERHEAD_S) * 312 / 989)
    assert step_flops("i-medium-400m", 1, 128, False) == pytest.approx(4 * step_flops("i-medium-400m", 1, 64, False))


def test_embed_cache_time_grows_with_the_captions():
    few, many = (estimate_time("i-medium-400m", batch=4, resolution=64, checkpointing=False, steps=10,
                               device=CPU, captions=n).embed_s for n in (10, 1000))
    assert many == pytest.approx(100 * few) and few > 0


def test_every_table_card_gives_a_time():
    for name in GPU_BF16_TFLOPS:
        t = report.preset_time(make(), Device(name, "cuda", 24576, 24576))
        assert 0 < t.step_s < 10 and t.steps == 1000 and "for 1,000 steps" in t.line()


def test_duration_words():
    assert [duration(s) for s in (0.004, 0.42, 4.2, 42, 600, 3 * 3600, 10 * 86400)] == [
        "under 0.01 s", "0.42 s", "4.2 s", "42 s", "10 min", "3.0 h", "10 days"]


def test_check_without_a_gpu_says_so_with_the_time_and_gives_no_ram_verdict(monkeypatch):
    monkeypatch.setattr(report, "detect_devices", lambda: [CPU])
    section = report.check_memory(make("i-xlarge-4.3b"), captions=200).section()
    assert section.ok and section.data["verdict"] == "not_judged"
    [problem] = [p for p in section.problems if "no GPU found" in p.message]
    assert "training i-xlarge-4.3b here would take about" in problem.message and "for 1,000 steps" in problem.message
    assert not any("fit" in p.message for p in section.problems)
    assert section.data["time"]["embed_s"] > 0 and section.data["time"]["steps"] == 1000


def test_check_with_a_gpu_gives_the_time_line(monkeypatch):
    monkeypatch.setenv("FLOYDTUI_ASSUME_GPU", "RTX 4090:24564")
    section = report.check_memory(make(max_train_steps=2000)).section()
    [line] = [x for x in section.lines if x.startswith("time: about")]
    assert "for 2,000 steps" in line and "RTX 4090" in line


def test_the_builtin_model_on_a_cpu_keeps_its_ram_verdict(monkeypatch):
    monkeypatch.setattr(report, "detect_devices", lambda: [CPU])
    section = report.check_memory(make(model="builtin:tiny-if-i")).section()
    assert section.data["verdict"] == "fits"
    assert not any("no GPU found" in p.message for p in section.problems)
    assert section.data["time"]["step_s"] < 1  # a few million parameters


def test_hardware_step_without_a_gpu():
    """With no GPU detected (the tests' default), the hardware step shows the no-GPU message for
    i-medium-400m and the plain verdict for builtin:tiny-if-i."""
    from test_tui import goto, settle, static_text

    from floydtui.hardware.devices import detect_devices
    from floydtui.tui.app import create_app

    if any(d.is_gpu for d in detect_devices()):
        pytest.skip("this machine has a GPU")
    app = create_app()

    async def test(pilot):
        await pilot.click("#card-i-medium-400m")
        await goto(pilot, "hardware")
        first = static_text(app, "#hw-no-gpu")
        assert "no GPU found: training i-medium-400m here would take about" in first
        assert "for 1,000 steps" in first
        assert static_text(app, "#hw-verdict").strip() == ""  # no verdict against the CPU's RAM
        body = app.screen.query_one("#hardware-body")
        assert body.children[0].id == "hw-no-gpu" and app.screen.query_one("#hw-no-gpu").display

        app.screen.state.set("model", "pretrained_model_name_or_path", "builtin:tiny-if-i")
        app.screen.query_one("#pane-hardware").state_changed()
        await settle(pilot)
        assert not app.screen.query_one("#hw-no-gpu").display
        verdict = static_text(app, "#hw-verdict")
        assert "FITS" in verdict and "RAM" not in static_text(app, "#hw-no-gpu")
        assert "about" in static_text(app, "#hw-time") and "a step" in static_text(app, "#hw-time")

    async def main():
        async with app.run_test(size=(100, 40), notifications=True) as pilot:
            await pilot.pause()
            await test(pilot)
    asyncio.run(main())
