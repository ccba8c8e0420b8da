"""Runs that report to TensorBoard, wandb and webhooks (issue 16).

The judges are not ours: TensorBoard's own reader loads the event files, and a real HTTP
server on 127.0.0.1 receives the webhooks. Runs are the built-in tiny model at 32px, 4 steps.
"""

from __future__ import annotations

import email.parser
import email.policy
import importlib.util
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from helpers import WAIT_S, copy_captioned
from floydtui.config.preset import load_preset, preset_from_dict
from floydtui.config.reporting import read_webhook_config
from floydtui.errors import FloydError
from floydtui.events import EventWriter, read_events
from floydtui.train.reporting import WebhookMessage, WebhookSender

REPO = Path(__file__).resolve().parent.parent
SECRET = "T0ken-in-the-path-0123456789"  # the part of a webhook URL that must never be echoed
STEPS = 4


def write_preset(tmp_path: Path, output: str = "", name: str = "preset.toml") -> Path:
    """4 steps at 32px on 6 demo images; validation at step 2 and at the end; extra [output] lines."""
    copy_captioned(sorted((REPO / "examples" / "demo-data").glob("*.png"))[:6], tmp_path / "data")
    path = tmp_path / name
    path.write_text(f"""
[model]
model_flavour = "i-medium-400m"
pretrained_model_name_or_path = "builtin:tiny-if-i"

[training]
lora_rank = 4
learning_rate = 1e-2
lr_end = 1e-3
train_batch_size = 2
max_train_steps = {STEPS}
mixed_precision = "no"
resolution = 32
checkpointing_steps = 2
seed = 3

[validation]
validation_resolution = "32,32x48"
validation_prompt = "a red circle on a blue background"
validation_steps = 2
validation_num_inference_steps = 2

[output]
output_dir = "out-{path.stem}"
{output}

[[datasets]]
id = "shapes"
instance_data_dir = "data"
minimum_image_size = 32
caption_strategy = "textfile"

[[datasets]]
id = "text-embeds"
dataset_type = "text_embeds"
default = true
cache_dir = "cache"
""")
    return path


def floydtui(*args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLOYDTUI_DEBUG": "1"}
    return subprocess.run([sys.executable, "-m", "floydtui", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


class Endpoint:
    """A real HTTP server on 127.0.0.1: `mode` "ok" records each POST, "500" fails, "hang" never answers."""

    def __init__(self, mode: str = "ok") -> None:
        self.posts: list[dict] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append({"path": self.path, "type": self.headers["Content-Type"], "body": body})
                if mode == "hang":
                    outer.release.wait(120)
                    return
                self.send_response(500 if mode == "500" else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def lora_file(run: Path) -> tuple[dict, dict]:
    """A run's LoRA tensors and header metadata (the file's bytes differ: safetensors orders metadata freely)."""
    from safetensors import safe_open

    with safe_open(str(run / "pytorch_lora_weights.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def run_texts(run: Path) -> str:
    """Every text file a run wrote (events, preset copy, model card, tracker logs)."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in run.rglob("*")
                     if p.is_file() and p.suffix not in (".safetensors", ".pt", ".png", ".bin"))


# ---- TensorBoard, read by TensorBoard -----------------------------------------------
@pytest.mark.slow
def test_a_tensorboard_run_writes_what_tensorboards_reader_loads(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, SCALARS, EventAccumulator

    preset = write_preset(tmp_path, 'report_to = "tensorboard"\ntracker_project_name = "shapes"')
    result = floydtui("run", str(preset), "--set", "num_validation_images=2")  # each image's seed in its tag
    assert result.returncode == 0, result.stderr
    run = tmp_path / "out-preset"
    events = read_events(run / "events.jsonl")
    assert not [e for e in events if e["type"] == "warning" and "report" in e["message"]]

    logs = run / "logs" / "shapes"  # accelerate's layout: logging_dir/project; `tensorboard --logdir OUTPUT_DIR`
    acc = EventAccumulator(str(logs), size_guidance={SCALARS: 0, IMAGES: 0})
    acc.Reload()
    losses = acc.Scalars("train/loss")
    steps = [e for e in events if e["type"] == "step"]
    assert [s.step for s in losses] == [e["step"] for e in steps] == list(range(1, STEPS + 1))
    assert [s.value for s in losses] == pytest.approx([e["loss"] for e in steps], rel=1e-5)
    assert len(acc.Scalars("train/lr")) == len(acc.Scalars("train/samples_per_s")) == STEPS

    validations = [e for e in events if e["type"] == "validation"]
    assert [v["step"] for v in validations] == [2, 4]
    tags = acc.Tags()["images"]
    images = validations[-1]["images"]
    assert {i["seed"] for i in images} == {0, 1} and len(tags) == len(images) == 4  # 32x32 and 32x48, 2 seeds each
    assert all("a red circle on a blue background" in t for t in tags)  # the prompt names it
    for image in images:
        (tag,) = [t for t in tags if f"({image['width']}x{image['height']}, seed {image['seed']})" in t]
        logged = acc.Images(tag)
        assert [i.step for i in logged] == [2, 4]
        assert (logged[-1].width, logged[-1].height) == (image["width"], image["height"])
        assert logged[-1].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"

    # the resolved preset is the run's config (accelerate writes it beside the events as hparams.yml)
    hparams = list(logs.rglob("hparams.yml"))
    assert hparams and "learning_rate: 0.01" in hparams[0].read_text()


# ---- webhooks ---------------------------------------------------------------------
@pytest.mark.slow
def test_webhooks_get_start_validation_checkpoint_and_end_in_order(tmp_path):
    server = Endpoint()
    try:
        hooks = tmp_path / "webhooks.json"
        hooks.write_text(json.dumps([
            {"webhook_type": "raw", "callback_url": server.url(f"/raw/{SECRET}")},
            {"webhook_type": "discord", "webhook_url": server.url(f"/api/webhooks/1/{SECRET}"),
             "message_prefix": "shapes"},
        ]))
        preset = write_preset(tmp_path, 'webhook_config = "webhooks.json"')
        result = floydtui("run", str(preset), "--json")
        assert result.returncode == 0, result.stderr
    finally:
        server.close()
    run = tmp_path / "out-preset"
    events = read_events(run / "events.jsonl")
    assert not [e for e in events if e["type"] == "warning" and "webhook" in e["message"]]

    raw = [json.loads(p["body"]) for p in server.posts if p["path"].startswith("/raw/")]
    kinds = [m["message_type"] for m in raw]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end", kinds
    assert [m["step"] for m in raw if m["message_type"] == "validation"] == [2, 4]
    assert [m["step"] for m in raw if m["message_type"] == "checkpoint"] == [2, 4]
    start, end = raw[0], raw[-1]
    run_start = next(e for e in events if e["type"] == "run_start")
    assert start["job_id"] == run_start["run_id"] and start["total_steps"] == STEPS
    last_step = [e for e in events if e["type"] == "step"][-1]
    assert end["status"] == "completed" and end["steps"] == STEPS and end["final_loss"] == last_step["loss"]
    assert end["lora_path"] == str(run / "pytorch_lora_weights.safetensors")
    assert end["wall_time_s"] > 0
    validation = next(m for m in raw if m["message_type"] == "validation")
    assert {i["prompt"] for i in validation["images"]} == {"a red circle on a blue background"}

    discord = [p for p in server.posts if p["path"].startswith("/api/webhooks/")]
    assert len(discord) == len(raw)  # the same messages, in Discord's shape
    contents = []
    for post in discord:
        if post["type"].startswith("multipart/form-data"):  # a validation: payload_json plus the first image
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {post['type']}\r\n\r\n".encode() + post["body"])
            parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
            assert parts["files[0]"].get_content()[:8] == b"\x89PNG\r\n\x1a\n"
            contents.append(json.loads(parts["payload_json"].get_content())["content"])
        else:
            contents.append(json.loads(post["body"])["content"])
    assert all(c.startswith("`(shapes)` ") for c in contents)
    assert sum(p["type"].startswith("multipart/") for p in discord) == 2
    assert "run completed after 4 step(s)" in contents[-1]

    # the URLs are secrets: nowhere in what the run wrote or printed
    assert SECRET not in run_texts(run) + result.stdout + result.stderr


@pytest.mark.slow
def test_a_failing_or_hanging_endpoint_changes_neither_the_lora_nor_the_exit_code(tmp_path):
    plain = write_preset(tmp_path, name="plain.toml")
    assert floydtui("run", str(plain)).returncode == 0
    failing, hanging = Endpoint("500"), Endpoint("hang")
    try:
        hooked = write_preset(tmp_path, "webhook_config = " + json.dumps(json.dumps([
            {"webhook_type": "raw", "callback_url": failing.url(f"/{SECRET}")},
            {"webhook_type": "discord", "webhook_url": hanging.url(f"/{SECRET}")}])), name="hooked.toml")
        result = floydtui("run", str(hooked))
    finally:
        failing.close()
        hanging.close()
    assert result.returncode == 0, result.stderr
    a, b = (lora_file(tmp_path / f"out-{name}") for name in ("plain", "hooked"))
    assert a[1] == b[1] and a[0].keys() == b[0].keys()  # the header's metadata, and every tensor bit for bit
    assert all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    # tried, and failed (how many get through before the end's 10 s drain depends on how long the
    # hanging endpoint holds the one sender thread: a machine's speed, not behaviour)
    assert len(failing.posts) >= 1

    events = read_events(tmp_path / "out-hooked" / "events.jsonl")
    warnings = [e["message"] for e in events if e["type"] == "warning" and "webhook" in e["message"]]
    assert sum("webhook #1 (raw): the endpoint answered HTTP 500" in w for w in warnings) == 1, warnings
    assert sum("webhook #2 (discord): no answer within" in w for w in warnings) == 1, warnings
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed"
    # an inline webhook_config stays out of the run's copy of the preset, and out of everything else
    assert "webhook_config" not in (tmp_path / "out-hooked" / "preset.toml").read_text()
    assert SECRET not in run_texts(tmp_path / "out-hooked") + result.stdout + result.stderr


@pytest.mark.slow
def test_a_failed_run_sends_its_error_and_a_failed_end(tmp_path):
    server = Endpoint()
    try:
        hooks = json.dumps(json.dumps({"webhook_type": "raw", "callback_url": server.url("/raw")}))
        preset = write_preset(tmp_path, f"webhook_config = {hooks}")
        result = floydtui("run", str(preset), "--set", "train_batch_size=64")  # 6 images never fill a batch
        assert result.returncode == 2, result.stderr
    finally:
        server.close()
    messages = [json.loads(p["body"]) for p in server.posts]
    assert [m["message_type"] for m in messages][-2:] == ["error", "run_end"]
    error, end = messages[-2:]
    event = [e for e in read_events(tmp_path / "out-preset" / "events.jsonl") if e["type"] == "error"][-1]
    assert "train_batch_size 64" in event["message"]
    assert (error["message"], error["hint"], error["level"]) == (event["message"], event["hint"], "error")
    assert (end["status"], end["level"], end["error"]) == ("failed", "error", event["message"])


@pytest.mark.slow
def test_with_two_processes_only_the_main_one_reports(tmp_path):
    server = Endpoint()
    try:
        hooks = json.dumps(json.dumps({"webhook_type": "raw", "callback_url": server.url("/raw")}))
        preset = write_preset(tmp_path, f'report_to = "tensorboard"\nwebhook_config = {hooks}')
        result = floydtui("run", str(preset), "--json", "--num-processes", "2", "--max-train-steps", "2")
        assert result.returncode == 0, result.stderr
    finally:
        server.close()
    kinds = [json.loads(p["body"])["message_type"] for p in server.posts]
    assert kinds.count("run_start") == kinds.count("run_end") == 1 and kinds[-1] == "run_end", kinds
    assert json.loads(server.posts[0]["body"])["world_size"] == 2
    logs = tmp_path / "out-preset" / "logs"
    assert len([p for p in logs.rglob("events.out.tfevents.*") if p.parent.name == "floydtui"]) == 1


def test_a_dead_endpoint_is_one_warning_and_send_never_blocks():
    dead = Endpoint()
    url = dead.url(f"/{SECRET}")
    dead.close()  # nothing listens there now
    [endpoint] = read_webhook_config({"webhook_type": "raw", "callback_url": url}, REPO)
    sender = WebhookSender([endpoint], prefix="p", queue_size=2)
    for i in range(10):  # more than the queue holds: the rest are dropped, not waited for
        sender.send(WebhookMessage("checkpoint", "info", f"checkpoint {i}"))
    sender.close(wait=30)
    failures = [kind for _, kind in sender.take_failures()]
    assert "connection refused" in failures
    assert len(failures) == len(set(failures)) <= 2  # refused, and perhaps dropped: each said once
    assert not sender.take_failures()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (not a dev dependency)")
def test_wandb_without_a_login_logs_offline_with_a_warning(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    preset = write_preset(tmp_path, 'report_to = "wandb"')
    result = floydtui("run", str(preset), "--json")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "out-preset"
    warnings = [e["message"] for e in read_events(run / "events.jsonl") if e["type"] == "warning"]
    assert any("wandb: not logged in, so this run logs offline" in w for w in warnings), warnings
    [offline] = (run / "logs" / "wandb").glob("offline-run-*")
    assert len(list(offline.rglob("*.png"))) == 4  # 2 sizes x 2 validations, with their prompt in the name


# ---- configuration ---------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_without_wandb_fails_check_and_run_with_the_install_command(tmp_path):
    preset = write_preset(tmp_path, 'report_to = "wandb"')
    check = floydtui("check", str(preset))
    assert check.returncode == 1
    assert "report_to = 'wandb' but wandb is not installed" in check.stdout
    assert "pip install 'floydtui[wandb]'" in check.stdout
    run = floydtui("run", str(preset), "--json")
    assert run.returncode == 2
    errors = [e for e in read_events(tmp_path / "out-preset" / "events.jsonl") if e["type"] == "error"]
    assert "pip install 'floydtui[wandb]'" in errors[0]["hint"]


def test_webhook_config_forms_and_errors_that_never_echo_the_url(tmp_path):
    raw = {"webhook_type": "raw", "callback_url": f"https://example.invalid/{SECRET}"}
    discord = {"webhook_type": "discord", "webhook_url": f"https://discord.com/api/webhooks/1/{SECRET}",
               "log_level": "error"}
    (tmp_path / "hooks.json").write_text(json.dumps([raw, discord]))
    for value in ("hooks.json", json.dumps([raw, discord]), [raw, discord]):
        endpoints = read_webhook_config(value, tmp_path)
        expected = [("raw", raw["callback_url"]), ("discord", discord["webhook_url"])]
        assert [(e.type, e.url) for e in endpoints] == expected
        assert endpoints[1].wants("error") and not endpoints[1].wants("info")
        assert SECRET not in repr(endpoints)
    assert [e.type for e in read_webhook_config(raw, tmp_path)] == ["raw"]

    bad = [({"webhook_type": "slack", "url": f"https://x/{SECRET}"}, "webhook_type must be one of"),
           ({"webhook_type": "discord", "callback_url": f"https://x/{SECRET}"}, "needs webhook_url"),
           ('[{"webhook_type": "raw", "callback_url": "' + SECRET + '"', "JSON syntax error"),
           ("missing.json", "does not exist")]
    for value, expected in bad:
        with pytest.raises(FloydError) as err:
            read_webhook_config(value, tmp_path)
        assert expected in str(err.value) and SECRET not in str(err.value)

    # preset loading checks inline entries (a file is for `check` and the run: an import may name one not there yet)
    preset = write_preset(tmp_path, "[[output.webhook_config]]\nwebhook_type = \"raw\"")
    with pytest.raises(FloydError, match="needs callback_url"):
        load_preset(preset)
    assert load_preset(write_preset(tmp_path, 'webhook_config = "later.json"')).output["webhook_config"] == "later.json"


def test_simpletuner_names_land_in_the_real_keys(tmp_path):
    from floydtui.config.simpletuner import import_simpletuner

    (tmp_path / "config.json").write_text(json.dumps({
        "--model_family": "deepfloyd", "--model_flavour": "i-medium-400m", "--report_to": "tensorboard",
        "--tracker_project_name": "if-lora", "--tracker_run_name": "run-1", "--webhook_config": "webhooks.json"}))
    (tmp_path / "multidatabackend.json").write_text(json.dumps([
        {"id": "d", "type": "local", "instance_data_dir": "data"},
        {"id": "t", "dataset_type": "text_embeds", "default": True, "type": "local", "cache_dir": "c"}]))
    data, _ = import_simpletuner([tmp_path / "config.json", tmp_path / "multidatabackend.json"])
    keys = ("report_to", "tracker_project_name", "tracker_run_name", "webhook_config")
    assert {k: data["output"][k] for k in keys} == {"report_to": "tensorboard", "tracker_project_name": "if-lora",
                              "tracker_run_name": "run-1", "webhook_config": "webhooks.json"}
    assert not set(keys) & set(data.get("extra", {}))  # (extra keeps SimpleTuner defaults floydtui lacks)
    preset = preset_from_dict(data, source=tmp_path / "preset.toml")
    assert preset.to_dict(absolute_paths=True)["output"]["webhook_config"] == str(tmp_path / "webhooks.json")


def test_an_imported_preset_with_inline_webhook_urls_is_written_for_its_owner_only(tmp_path):
    import os
    import stat

    from floydtui.config.simpletuner import import_simpletuner, write_preset_file

    hooks = json.dumps({"webhook_type": "raw", "callback_url": f"https://example.invalid/{SECRET}"})
    paths = []
    for name, hook in (("file", "webhooks.json"), ("inline", hooks)):
        (tmp_path / f"{name}.json").write_text(json.dumps({
            "--model_family": "deepfloyd", "--model_flavour": "i-medium-400m", "--webhook_config": hook,
            "--data_backend_config": str(tmp_path / "multidatabackend.json")}))
        (tmp_path / "multidatabackend.json").write_text(json.dumps([{"id": "d", "type": "local",
                                                                     "instance_data_dir": "data"}]))
        data, _ = import_simpletuner([tmp_path / f"{name}.json"])
        old = os.umask(0o022)
        try:
            paths.append(write_preset_file(data, tmp_path / f"{name}.toml")[0])
        finally:
            os.umask(old)
    assert SECRET in paths[1].read_text()
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o644, 0o600]


def test_a_preset_that_reports_nowhere_gets_no_reporter(tmp_path):
    from floydtui.train.reporting import Reporter

    preset = load_preset(write_preset(tmp_path))
    with EventWriter(tmp_path / "events.jsonl") as events:
        assert Reporter.for_run(preset, events) is None and events.listeners == []


def test_export_writes_a_webhook_file_reference_and_never_inline_urls(tmp_path, capsys):
    from floydtui.cli import main

    inline = write_preset(tmp_path, "webhook_config = " + json.dumps(json.dumps(
        {"webhook_type": "raw", "callback_url": f"https://example.invalid/{SECRET}"})), name="inline.toml")
    assert main(["export", str(inline), "-o", str(tmp_path / "st-inline")]) == 0
    assert "inline webhook_config was left out" in capsys.readouterr().out
    config = json.loads((tmp_path / "st-inline" / "config.json").read_text())
    assert "webhook_config" not in config and config["tracker_run_name"] == "out-inline"
    assert SECRET not in "".join(p.read_text() for p in (tmp_path / "st-inline").iterdir())

    by_file = write_preset(tmp_path, 'report_to = "tensorboard"\nwebhook_config = "hooks.json"', name="file.toml")
    assert main(["export", str(by_file), "-o", str(tmp_path / "st-file")]) == 0
    config = json.loads((tmp_path / "st-file" / "config.json").read_text())
    assert (config["report_to"], config["webhook_config"]) == ("tensorboard", "hooks.json")
    assert "hooks.json" in capsys.readouterr().out  # named among the relative paths SimpleTuner reads from its cwd
