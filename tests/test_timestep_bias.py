"""SimpleTuner's timestep bias in floydtui's trainer (issue 19): the keys, their checks, the draw, the mapping.

The weights are compared with SimpleTuner 4.10.1's own generate_timestep_weights in
tests/test_simpletuner_real.py (the judge); these run without SimpleTuner.
"""

import json

import pytest
import torch

from helpers import REPO
from floydtui.cli import main
from floydtui.config import load_preset
from floydtui.config.simpletuner import export_simpletuner, import_simpletuner
from floydtui.errors import FloydError
from floydtui.train.inputs import Stage2Inputs, draw_timesteps, stage1_inputs, timestep_bias_weights

N = 1000  # every IF scheduler's num_train_timesteps
LATER = {"timestep_bias_strategy": "later", "timestep_bias_multiplier": 5, "timestep_bias_portion": 0.25}


# presets/demo.toml may set a bias of its own; these tests start from none
UNBIASED = {"timestep_bias_strategy": "none", "timestep_bias_multiplier": 1.0, "timestep_bias_portion": 0.25}


def _demo(repo, **overrides):
    """presets/demo.toml without its bias, with `overrides` loaded (and checked) as the preset's own."""
    return load_preset(repo / "presets/demo.toml", {**UNBIASED, **overrides})


@pytest.fixture(scope="module")
def if_scheduler():
    """IF-I-M's own DDPMScheduler (the config shipped with floydtui; no weights)."""
    from floydtui.train.models import load_noise_scheduler

    return load_noise_scheduler(REPO / "floydtui/config/if_configs/IF-I-M-v1.0")


def _training(repo, **overrides) -> dict:
    return _demo(repo).with_overrides(overrides).training


def test_the_keys_default_to_simpletuners_defaults_and_no_bias(repo):
    t = _demo(repo).training
    assert (t["timestep_bias_strategy"], t["timestep_bias_multiplier"], t["timestep_bias_portion"],
            t["timestep_bias_begin"], t["timestep_bias_end"]) == ("none", 1.0, 0.25, 0, 1000)
    assert timestep_bias_weights(t, N) is None


def test_later_weights_the_highest_timesteps(repo):
    """SimpleTuner's code biases the last indices for "later": the noisiest timesteps (its help text says otherwise)."""
    w = timestep_bias_weights(_training(repo, **LATER), N)
    assert w.shape == (N,) and torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.all(w[750:] == w[999]) and torch.all(w[:750] == w[0])
    assert torch.isclose(w[999] / w[0], torch.tensor(5.0))
    early = timestep_bias_weights(_training(repo, **LATER | {"timestep_bias_strategy": "earlier"}), N)
    assert torch.isclose(early[0] / early[999], torch.tensor(5.0)) and torch.all(early[:250] == early[0])
    window = timestep_bias_weights(_training(repo, timestep_bias_strategy="range", timestep_bias_multiplier=3,
                                             timestep_bias_begin=200, timestep_bias_end=500), N)
    assert torch.all(window[200:500] == window[200]) and torch.isclose(window[200] / window[199], torch.tensor(3.0))
    assert window[500] == window[199]  # the end is not included


@pytest.mark.parametrize("overrides,low,high,expected", [
    (LATER, 750, N, 5 / 8),  # 250 timesteps at 5x against 750 at 1x
    (LATER | {"timestep_bias_strategy": "earlier"}, 0, 250, 5 / 8),
    ({"timestep_bias_strategy": "range", "timestep_bias_multiplier": 3, "timestep_bias_begin": 200,
      "timestep_bias_end": 500}, 200, 500, 900 / 1600),
    ({}, 750, N, 1 / 4),  # no bias: uniform
], ids=["later", "earlier", "range", "none"])
def test_the_trainers_draw_follows_the_bias(repo, if_scheduler, overrides, low, high, expected):
    """10k timesteps drawn the trainer's way (its input builder on IF's scheduler), one seed."""
    from floydtui.train.trainer import input_builder

    preset = _demo(repo).with_overrides(overrides)
    make_inputs = input_builder(preset, repo, if_scheduler)  # stage I reads nothing from the model folder
    inputs = make_inputs(torch.zeros(10_000, 3, 1, 1), if_scheduler, torch.Generator().manual_seed(1234))
    t = inputs.timesteps
    assert t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) < N
    fraction = ((t >= low) & (t < high)).float().mean().item()
    # binomial sd at 10k draws is under 0.005: +-0.04 is more than 8 sd
    assert abs(fraction - expected) < 0.04, (fraction, expected)


def test_no_bias_draws_exactly_what_the_uniform_trainer_drew(if_scheduler):
    """"none" keeps torch.randint on the step generator: the same tensors, and the generator left in the same state."""
    x0 = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    gen, ref_gen = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    ours = stage1_inputs(x0, if_scheduler, gen)
    noise = torch.randn(x0.shape, generator=ref_gen)
    timesteps = torch.randint(0, N, (4,), generator=ref_gen)
    assert torch.equal(ours.timesteps, timesteps) and torch.equal(ours.target, noise)
    assert torch.equal(ours.sample, if_scheduler.add_noise(x0, noise, timesteps))
    assert torch.equal(gen.get_state(), ref_gen.get_state())
    assert torch.equal(draw_timesteps(4, N, torch.Generator().manual_seed(3)),
                       torch.randint(0, N, (4,), generator=torch.Generator().manual_seed(3)))


def test_stage2_biases_the_timestep_but_not_the_noise_level(if_scheduler):
    x0 = torch.zeros(4000, 3, 4, 4)
    weights = timestep_bias_weights({"timestep_bias_strategy": "later", "timestep_bias_multiplier": 5,
                                     "timestep_bias_portion": 0.25, "timestep_bias_begin": 0,
                                     "timestep_bias_end": 1000}, N)
    built = Stage2Inputs(if_scheduler, "pipeline", weights)(x0, if_scheduler, torch.Generator().manual_seed(5))
    assert abs((built.timesteps >= 750).float().mean().item() - 5 / 8) < 0.05
    assert abs((built.class_labels >= 750).float().mean().item() - 1 / 4) < 0.05  # the noise level stays uniform
    ref_gen, gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    plain = Stage2Inputs(if_scheduler, "pipeline")(x0[:4], if_scheduler, gen)
    torch.randn(x0[:4].shape, generator=ref_gen), torch.randn(x0[:4].shape, generator=ref_gen)
    assert torch.equal(plain.timesteps, torch.randint(0, N, (4,), generator=ref_gen))
    assert torch.equal(plain.class_labels, torch.randint(0, N, (4,), generator=ref_gen))


def test_a_model_with_a_shorter_schedule_refuses_a_range_past_it():
    training = {"timestep_bias_strategy": "range", "timestep_bias_multiplier": 2, "timestep_bias_portion": 0.25,
                "timestep_bias_begin": 100, "timestep_bias_end": 1000}
    with pytest.raises(FloydError) as e:
        timestep_bias_weights(training, 500)
    assert e.value.problems[0].key == "timestep_bias_end" and "500" in e.value.problems[0].hint


BAD = [
    ({"timestep_bias_strategy": "later", "timestep_bias_multiplier": 0}, "timestep_bias_multiplier",
     "must be > 0", "timestep_bias_strategy = \"none\""),
    ({"timestep_bias_strategy": "range", "timestep_bias_end": 1001}, "timestep_bias_end",
     "past the end of the schedule", "at most 1000"),
    ({"timestep_bias_strategy": "range", "timestep_bias_begin": 600, "timestep_bias_end": 600}, "timestep_bias_begin",
     "biases no timestep", "begin = 750, end = 1000"),
    ({"timestep_bias_begin": -1}, "timestep_bias_begin", "out of range: must be an integer >= 0", "first biased"),
    ({"timestep_bias_portion": 1.5}, "timestep_bias_portion", "out of range: must be an integer or a number >= 0 <= 1",
     "fraction of the schedule"),
    ({"timestep_bias_strategy": "latter"}, "timestep_bias_strategy", "is not allowed", "did you mean later?"),
]


@pytest.mark.parametrize("overrides,key,message,hint", BAD, ids=[b[1] + "-" + b[2][:12] for b in BAD])
def test_a_bad_value_is_a_clear_problem(repo, overrides, key, message, hint):
    with pytest.raises(FloydError) as e:
        _demo(repo, **overrides)
    problem = next(p for p in e.value.problems if p.key == key)
    assert message in problem.message and hint in problem.hint and "demo.toml [training]" in problem.where


def test_a_multiplier_is_free_without_a_strategy(repo):
    """SimpleTuner reads the multiplier only with a strategy set; so does floydtui."""
    assert _demo(repo, timestep_bias_multiplier=0).training["timestep_bias_strategy"] == "none"


def test_floydtui_check_names_the_bad_key(repo, capsys):
    demo = str(repo / "presets/demo.toml")
    assert main(["check", demo, "--set", "timestep_bias_strategy=later", "--set", "timestep_bias_multiplier=0"]) == 1
    err = capsys.readouterr().err
    assert "timestep_bias_multiplier = 0 with timestep_bias_strategy = 'later'" in err and "demo.toml" in err
    assert main(["check", demo, "--json", "--set", "timestep_bias_strategy=range", "--set",
                 "timestep_bias_end=2000"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [p["key"] for p in out["problems"]] == ["timestep_bias_end"]


# ---- SimpleTuner import / export ---------------------------------------------------------------
def _preset_of(data: dict, tmp_path):
    from floydtui.config.preset import preset_from_dict

    return preset_from_dict(data, source=tmp_path / "imported.toml")


def _export(preset, out):
    _, warnings = export_simpletuner(preset, out)
    return json.loads((out / "config.json").read_text()), warnings


def test_export_says_the_bias_and_turns_segmented_sampling_off(repo, tmp_path):
    base = load_preset(repo / "presets/i-medium-400m.toml")
    config, _ = _export(base, tmp_path / "plain")
    assert not {k for k in config if "timestep" in k}  # no bias: SimpleTuner's defaults say it
    biased = base.with_overrides({"timestep_bias_strategy": "range", "timestep_bias_multiplier": 3,
                                  "timestep_bias_begin": 700, "timestep_bias_end": 1000})
    config, _ = _export(biased, tmp_path / "bias")
    assert {k: v for k, v in config.items() if "timestep" in k} == {
        "timestep_bias_strategy": "range", "timestep_bias_multiplier": 3, "timestep_bias_begin": 700,
        "disable_segmented_timestep_sampling": True}
    (tmp_path / "bias/floydtui.json").unlink()  # config.json alone carries the meaning back
    data, notes = import_simpletuner([tmp_path / "bias/config.json"])
    assert {k: v for k, v in data["training"].items() if k.startswith("timestep_bias")} == {
        "timestep_bias_strategy": "range", "timestep_bias_multiplier": 3, "timestep_bias_portion": 0.25,
        "timestep_bias_begin": 700, "timestep_bias_end": 1000}
    assert not [n for n in notes if n.key == "timestep_bias_strategy"]
    # with a bias it is what floydtui always does: not kept as an extra, export writes it again
    assert "disable_segmented_timestep_sampling" not in data.get("extra", {})
    assert _export(_preset_of(data, tmp_path), tmp_path / "again")[0]["disable_segmented_timestep_sampling"]



@pytest.mark.parametrize("batch,segmented_flag,warned", [(4, None, True), (4, False, True), (4, True, False),
                                                         (1, None, False)])
def test_import_warns_that_simpletuners_segmented_draw_weakens_the_bias(tmp_path, batch, segmented_flag, warned):
    config = {"model_family": "deepfloyd", "model_type": "lora", "train_batch_size": batch,
              "timestep_bias_strategy": "later", "timestep_bias_multiplier": 5}
    if segmented_flag is not None:
        config["disable_segmented_timestep_sampling"] = segmented_flag
    (tmp_path / "config.json").write_text(json.dumps(config))
    data, notes = import_simpletuner([tmp_path / "config.json"])
    assert data["training"]["timestep_bias_strategy"] == "later" and data["training"]["timestep_bias_multiplier"] == 5
    found = [n for n in notes if n.key == "timestep_bias_strategy"]
    assert bool(found) == warned
    if warned:
        assert found[0].severity == "warning" and "disable_segmented_timestep_sampling = true" in found[0].message
        assert "segment" in found[0].message and "export writes disable_segmented_timestep_sampling" in found[0].hint
    assert "disable_segmented_timestep_sampling" not in data.get("extra", {}) or segmented_flag is True


def test_import_reads_simpletuners_unset_strategy_as_none(tmp_path):
    (tmp_path / "config.env").write_text("export TRAINER_EXTRA_ARGS='--timestep_bias_multiplier=2.5 "
                                         "--timestep_bias_portion=0.1'\n")
    data, notes = import_simpletuner([tmp_path / "config.env"])
    t = data["training"]
    assert (t["timestep_bias_strategy"], t["timestep_bias_multiplier"], t["timestep_bias_portion"]) == \
        ("none", 2.5, 0.1)
    assert not [n for n in notes if n.key == "timestep_bias_strategy"]


# ---- the wizard --------------------------------------------------------------------------------
def test_the_training_form_shows_the_keys_the_chosen_strategy_reads(repo):
    import asyncio

    from floydtui.tui.app import create_app

    app = create_app(repo / "presets/i-medium-400m.toml")  # no bias set (the demo sets one)

    def shown(key: str) -> bool:
        return app.screen.query_one(f"#field-{key}").display

    async def main():
        async with app.run_test(size=(100, 40)) as pilot:
            while app.screen.current_step != "training":
                await pilot.press("ctrl+n")
                await pilot.pause()
            assert shown("timestep_bias_strategy")
            assert not any(shown(k) for k in ("timestep_bias_multiplier", "timestep_bias_portion",
                                              "timestep_bias_begin", "timestep_bias_end"))
            app.screen.query_one("#field-timestep_bias_strategy").editor.value = "range"
            await pilot.pause(0.2)
            assert app.screen.state.data["training"]["timestep_bias_strategy"] == "range"
            assert shown("timestep_bias_multiplier") and shown("timestep_bias_begin") and shown("timestep_bias_end")
            assert not shown("timestep_bias_portion")
            app.screen.query_one("#field-timestep_bias_strategy").editor.value = "later"
            multiplier = app.screen.query_one("#field-timestep_bias_multiplier")
            multiplier.editor.focus()
            await pilot.press("ctrl+a", "ctrl+k", "0")
            await pilot.pause(0.2)
            assert multiplier.has_class("-error") and shown("timestep_bias_portion") and not shown("timestep_bias_end")
            assert "must be > 0" in str(multiplier.query_one(".field-problem").content)

    asyncio.run(main())


# ---- a real run ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_biased_run_resumes_to_the_unbroken_lora_and_differs_from_an_unbiased_one(tmp_path):
    """The trainer records no timesteps, so the bias shows in the LoRA: resumed = unbroken, != unbiased."""
    import signal

    from helpers import WAIT_S, finish
    from floydtui.events import read_events
    from test_train import floydtui, lora_tensors, write_preset

    preset = write_preset(tmp_path, steps=4, training='timestep_bias_strategy = "later"\n'
                                                      'timestep_bias_multiplier = 5')

    def args(out: str, *more: str) -> tuple[str, ...]:
        return ("run", str(preset), "--output-dir", str(tmp_path / out), "--json", "--set", "validation_steps=0", *more)

    for out, more in (("unbroken", ()), ("unbiased", ("--set", "timestep_bias_strategy=none"))):
        code, _, err = finish(floydtui(*args(out, *more)))
        assert code == 0, err
    proc = floydtui(*args("resumed"))
    for line in proc.stdout:
        if '"type": "checkpoint"' in line:  # killed right after step 2's checkpoint
            proc.kill()
            break
    proc.wait(timeout=WAIT_S)
    assert proc.returncode == -signal.SIGKILL
    code, _, err = finish(floydtui(*args("resumed")))
    assert code == 0, err
    events = read_events(tmp_path / "resumed" / "events.jsonl")
    starts = [i for i, e in enumerate(events) if e["type"] == "run_start"]
    assert [next(e["step"] for e in events[i:] if e["type"] == "step") for i in starts] == [1, 3]
    unbroken, resumed, unbiased = (lora_tensors(tmp_path / d) for d in ("unbroken", "resumed", "unbiased"))
    for key in unbroken:
        torch.testing.assert_close(unbroken[key], resumed[key], atol=1e-5, rtol=0)
    assert max((unbroken[k] - unbiased[k]).abs().max().item() for k in unbroken) > 1e-4


def test_the_model_card_lists_the_bias_in_force(repo):
    from floydtui.train.card import model_card

    def card(**overrides) -> str:
        preset = _demo(repo).with_overrides(overrides)
        return model_card(preset, base_model="b", note="", steps=1, world_size=1, validation_images=[])

    assert "| timestep_bias_strategy | `none` |" in card() and "timestep_bias_multiplier" not in card()
    later = card(timestep_bias_strategy="later", timestep_bias_multiplier=3)
    assert "| timestep_bias_multiplier | `3` |" in later and "| timestep_bias_portion | `0.25` |" in later
    assert "timestep_bias_end" not in later
