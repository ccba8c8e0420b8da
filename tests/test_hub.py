"""floydtui.hub without the network: file selection, plans, access errors, disk room, tokens.

The online path runs against a fake hub (huggingface_hub's model_info, auth_check and
hf_hub_download replaced by functions that write the cache as the library does).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import WAIT_S

from floydtui.config.preset import preset_from_dict
from floydtui.errors import FloydError

M_REPO = "DeepFloyd/IF-I-M-v1.0"
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
MARKER = "hf_floydtuiMarkerTokenDoNotLeak0123456789"

# The layout of a DeepFloyd stage I repo on the hub (weights shrunk to a few kB).
REPO_FILES = {
    "README.md": b"# IF-I-M", "LICENSE": b"licence", "pipeline.png": b"png" * 100,
    "model_index.json": json.dumps({"_class_name": "IFPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                                    "text_encoder": ["transformers", "T5EncoderModel"],
                                    "tokenizer": ["transformers", "T5Tokenizer"],
                                    "scheduler": ["diffusers", "DDPMScheduler"],
                                    "safety_checker": ["deepfloyd_if", "IFSafetyChecker"],
                                    "feature_extractor": ["transformers", "CLIPImageProcessor"],
                                    "watermarker": ["deepfloyd_if", "IFWatermarker"]}).encode(),
    "unet/config.json": b'{"in_channels": 3}',
    "unet/diffusion_pytorch_model.safetensors": b"U" * 40_000,
    "unet/diffusion_pytorch_model.fp16.safetensors": b"u" * 20_000,
    "unet/diffusion_pytorch_model.bin": b"B" * 40_000,
    "unet/diffusion_pytorch_model.fp16.bin": b"b" * 20_000,
    "unet/diffusion_flax_model.msgpack": b"F" * 40_000,
    "scheduler/scheduler_config.json": b"{}",
    "text_encoder/config.json": b"{}",
    "text_encoder/model.safetensors.index.json": b'{"weight_map": {}}',
    "text_encoder/model-00001-of-00002.safetensors": b"T" * 60_000,
    "text_encoder/model-00002-of-00002.safetensors": b"T" * 50_000,
    "text_encoder/model.safetensors.index.fp16.json": b'{"weight_map": {"x": 1}}',
    "text_encoder/model.fp16-00001-of-00002.safetensors": b"t" * 30_000,
    "text_encoder/model.fp16-00002-of-00002.safetensors": b"t" * 25_000,
    "text_encoder/pytorch_model.bin.index.json": b"{}",
    "text_encoder/pytorch_model-00001-of-00002.bin": b"P" * 60_000,
    "tokenizer/spiece.model": b"s" * 5_000, "tokenizer/tokenizer_config.json": b"{}",
    "tokenizer/special_tokens_map.json": b"{}",
    "feature_extractor/preprocessor_config.json": b"{}",
    "safety_checker/config.json": b"{}", "safety_checker/model.fp16.safetensors": b"S" * 30_000,
    "safety_checker/pytorch_model.bin": b"S" * 60_000,
    "watermarker/diffusion_pytorch_model.safetensors": b"W" * 10_000,
}
# distinct contents, so that no two files share a blob
REPO_FILES = {name: data + b" " * i for i, (name, data) in enumerate(REPO_FILES.items())}
FP16_NEEDED = {
    "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
    "scheduler/scheduler_config.json", "text_encoder/config.json",
    "text_encoder/model.safetensors.index.fp16.json", "text_encoder/model.fp16-00001-of-00002.safetensors",
    "text_encoder/model.fp16-00002-of-00002.safetensors", "tokenizer/spiece.model",
    "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json",
    "feature_extractor/preprocessor_config.json",
}


def make_preset(tmp_path: Path, model: str = M_REPO, flavour: str = "i-medium-400m", **training):
    (tmp_path / "data").mkdir(exist_ok=True)
    data = {"model": {"model_flavour": flavour, "pretrained_model_name_or_path": model},
            "training": training, "output": {"output_dir": str(tmp_path / "out")},
            "datasets": [{"id": "d", "instance_data_dir": str(tmp_path / "data")},
                         {"id": "te", "dataset_type": "text_embeds", "default": True,
                          "cache_dir": str(tmp_path / "embeds")}]}
    return preset_from_dict(data)


def etag(data: bytes) -> str:
    """The blob name huggingface_hub gives a file: sha256 for LFS files, the git blob id otherwise."""
    if len(data) > 10_000:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """model_info, auth_check and hf_hub_download over REPO_FILES, writing the cache as the library does."""

    def __init__(self, files=REPO_FILES, gated="manual", access_error: Exception | None = None):
        self.files, self.gated, self.access_error = files, gated, access_error
        self.downloads: list[str] = []

    def install(self, monkeypatch) -> "FakeHub":
        import huggingface_hub
        from huggingface_hub import constants

        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a leak past the fakes fails fast, offline
        monkeypatch.setattr(huggingface_hub.HfApi, "model_info", self.model_info)
        monkeypatch.setattr(huggingface_hub.HfApi, "auth_check", self.auth_check)
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.hf_hub_download)
        return self

    def model_info(self, repo_id, *, revision=None, files_metadata=False, timeout=None, **kw):
        siblings = [SimpleNamespace(rfilename=name, size=len(data), blob_id=etag(data) if len(data) <= 10_000 else "x",
                                    lfs=SimpleNamespace(sha256=etag(data)) if len(data) > 10_000 else None)
                    for name, data in self.files.items()]
        return SimpleNamespace(sha=COMMIT, gated=self.gated, siblings=siblings)

    def auth_check(self, repo_id, **kw):
        if self.access_error:
            raise self.access_error

    def hf_hub_download(self, repo_id, filename, *, revision, cache_dir, tqdm_class=None, **kw):
        assert revision == COMMIT  # every file from the one commit the plan listed
        data = self.files[filename]
        storage = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
        blob = storage / "blobs" / etag(data)
        if not blob.exists():
            self.downloads.append(filename)
            bar = tqdm_class(total=len(data), initial=0, desc=filename, unit="B", unit_scale=True)
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            for start in range(0, len(data), 8192):
                bar.update(min(8192, len(data) - start))
            bar.close()
        link = storage / "snapshots" / revision / filename
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(os.path.relpath(blob, link.parent))
        return str(link)


def http_error(cls, status: int, message: str = "error"):
    import httpx2

    request = httpx2.Request("GET", "https://huggingface.co/api/models/x")
    return cls(message, response=httpx2.Response(status, request=request))


# ---- file selection ---------------------------------------------------------
def test_selection_takes_fp16_safetensors_and_skips_safety_checker_and_watermarker():
    from floydtui.hub.files import components_for, select_files

    chosen, variants = select_files(REPO_FILES, components_for(1, "model"), "auto")
    assert set(chosen) == FP16_NEEDED
    assert variants == {"unet": "fp16", "text_encoder": "fp16"}


def test_selection_variant_none_takes_full_precision_and_stage2_has_no_text_encoder():
    from floydtui.hub.files import components_for, select_files

    chosen, _ = select_files(REPO_FILES, components_for(1, "model"), "none")
    assert "unet/diffusion_pytorch_model.safetensors" in chosen
    assert {"text_encoder/model-00001-of-00002.safetensors", "text_encoder/model.safetensors.index.json"} <= set(chosen)
    assert not any(".fp16" in c or c.endswith(".bin") for c in chosen)
    stage2, _ = select_files(REPO_FILES, components_for(2, "model"), "auto")
    assert not any(c.startswith("text_encoder/") for c in stage2)
    with_safety, _ = select_files(REPO_FILES, components_for(1, "model", safety=True), "auto")
    safety = {"safety_checker/model.fp16.safetensors", "watermarker/diffusion_pytorch_model.safetensors"}
    assert safety <= set(with_safety)


def test_selection_falls_back_to_bin_when_there_is_no_safetensors():
    from floydtui.hub.files import select_files

    names = ["unet/config.json", "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.bin"]
    assert select_files(names, ("unet",), "auto")[0] == ["unet/config.json", "unet/diffusion_pytorch_model.fp16.bin"]
    assert select_files(names, ("unet",), "none")[0] == ["unet/config.json", "unet/diffusion_pytorch_model.bin"]


# ---- cache location and offline ----------------------------------------------
def test_hub_cache_dir_follows_hf_home_and_hf_hub_cache_at_call_time(monkeypatch, tmp_path):
    from floydtui.hub import hub_cache_dir

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub_cache_dir() == tmp_path / "elsewhere"


def test_offline_repo_missing_from_cache_names_repo_and_file(hub_cache):
    from floydtui.hub import fetch_model

    with pytest.raises(FloydError) as e:
        fetch_model(M_REPO, stage=1)
    text = e.value.format()
    assert M_REPO in text and "model_index.json" in text and "HF_HUB_OFFLINE" in text
    assert not hub_cache.exists()  # nothing written, nothing tried


def test_offline_plan_estimates_sizes_from_the_model_zoo(hub_cache, tmp_path):
    from floydtui.hub import plan_download

    plan = plan_download(make_preset(tmp_path, min_free_disk_mib=1))
    (repo,) = plan.repos
    assert repo.listed_by == "estimate" and plan.offline
    # 400M UNet parameters and 4.76B T5 parameters at 2 bytes each
    assert plan.left_bytes == pytest.approx(2 * 400e6 + 2 * 4.76e9, rel=0.01)
    assert plan.cached_bytes == 0
    # offline, `check` warns (the cache may be filled before the run); the run itself stops
    (problem,) = plan.problems
    assert "model_index.json" in problem.message and M_REPO in problem.message and problem.severity == "warning"
    assert repo.problems[0].is_error and repo.variant == "fp16"
    assert any(f.filename == "unet/diffusion_pytorch_model.fp16.safetensors" for f in repo.files)


def test_stage2_plan_takes_t5_from_a_cached_stage1_repo(hub_cache, tmp_path):
    from floydtui.hub import plan_download, text_encoder_source

    storage = hub_cache / "models--DeepFloyd--IF-I-L-v1.0"
    (storage / "snapshots" / COMMIT / "text_encoder").mkdir(parents=True)
    (storage / "snapshots" / COMMIT / "text_encoder" / "config.json").write_text("{}")
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(COMMIT)
    assert text_encoder_source("DeepFloyd/IF-II-M-v1.0", 2) == "DeepFloyd/IF-I-L-v1.0"
    assert text_encoder_source("DeepFloyd/IF-I-XL-v1.0", 1) == "DeepFloyd/IF-I-XL-v1.0"
    plan = plan_download(make_preset(tmp_path, "DeepFloyd/IF-II-M-v1.0", "ii-medium-450m"))
    model, te = plan.repos
    assert (model.repo_id, te.repo_id, te.role) == ("DeepFloyd/IF-II-M-v1.0", "DeepFloyd/IF-I-L-v1.0", "text encoder")
    assert not any(f.filename.startswith("text_encoder/") for f in model.files)
    assert any(f.filename == "text_encoder/config.json" and f.cached for f in te.files)
    assert any(f.filename.startswith("image_noising_scheduler/") for f in model.files)


# ---- online, against the fake hub ------------------------------------------------
def test_fetch_downloads_only_what_the_run_needs_with_progress_events(hub_cache, monkeypatch, tmp_path):
    from floydtui.events import EventWriter, read_events
    from floydtui.hub import fetch_model

    hub = FakeHub().install(monkeypatch)
    with EventWriter(tmp_path / "events.jsonl") as events:
        path = fetch_model(M_REPO, stage=1, events=events)
    assert set(hub.downloads) == FP16_NEEDED
    assert path == hub_cache / "models--DeepFloyd--IF-I-M-v1.0" / "snapshots" / COMMIT
    assert (hub_cache / "models--DeepFloyd--IF-I-M-v1.0" / "refs" / "main").read_text() == COMMIT
    evs = read_events(tmp_path / "events.jsonl")
    assert evs[0] == {**evs[0], "type": "phase", "name": "download"}
    progress = [e for e in evs if e["type"] == "progress"]
    total = sum(len(REPO_FILES[n]) for n in FP16_NEEDED)
    assert all(e["phase"] == "download" and e["total"] == total and e["rate"] >= 0 for e in progress)
    assert progress[-1]["done"] == total and progress[0]["done"] == 0
    # a second fetch finds everything in the cache: no download, no event
    hub.downloads.clear()
    with EventWriter(tmp_path / "events2.jsonl") as events:
        assert fetch_model(M_REPO, stage=1, events=events) == path
    assert hub.downloads == [] and read_events(tmp_path / "events2.jsonl") == []


def test_fetch_resumes_after_an_interrupted_download(hub_cache, monkeypatch):
    from floydtui.hub import fetch_model, plan_repo

    hub = FakeHub().install(monkeypatch)
    real = hub.hf_hub_download

    def dies_on_t5(repo_id, filename, **kw):
        if filename.startswith("text_encoder/model.fp16-"):
            raise KeyboardInterrupt
        return real(repo_id, filename, **kw)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", dies_on_t5)
    with pytest.raises(KeyboardInterrupt):
        fetch_model(M_REPO, stage=1)
    done_before = set(hub.downloads)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in done_before
    plan = plan_repo(M_REPO, stage=1)
    assert {f.filename for f in plan.missing} == FP16_NEEDED - done_before
    monkeypatch.setattr("huggingface_hub.hf_hub_download", real)
    hub.downloads.clear()
    fetch_model(M_REPO, stage=1)
    assert set(hub.downloads) == FP16_NEEDED - done_before


def test_plan_online_lists_sizes_from_the_hub_and_saves_them_for_offline(hub_cache, monkeypatch, tmp_path):
    from floydtui.hub import plan_download

    FakeHub().install(monkeypatch)
    preset = make_preset(tmp_path, min_free_disk_mib=1)
    plan = plan_download(preset)
    total = sum(len(REPO_FILES[n]) for n in FP16_NEEDED)
    assert (plan.total_bytes, plan.cached_bytes, plan.left_bytes) == (total, 0, total)
    assert {f.size_source for f in plan.files} == {"hub"} and plan.repos[0].gated
    assert any("accept the licence at https://huggingface.co/DeepFloyd/IF-I-M-v1.0" in line for line in plan.lines())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = plan_download(preset)
    assert {f.size_source for f in offline.files} == {"listing"} and offline.left_bytes == total
    assert any("unet/diffusion_pytorch_model.fp16.safetensors" in p.message or "model_index.json" in p.message
               for p in offline.problems)


def test_not_enough_room_is_an_error_before_any_download(hub_cache, monkeypatch, tmp_path):
    import floydtui.hub.disk as disk
    from floydtui.hub import fetch_model, plan_download, preflight_disk

    hub = FakeHub().install(monkeypatch)
    monkeypatch.setattr(disk, "free_bytes", lambda path: 50_000)
    with pytest.raises(FloydError) as e:
        fetch_model(M_REPO, stage=1)
    assert "not enough room" in e.value.format() and "HF_HUB_CACHE" in e.value.format()
    assert hub.downloads == []
    preset = make_preset(tmp_path, min_free_disk_mib=1)
    plan = plan_download(preset)
    (problem,) = plan.disk_problems
    assert "50.0 kB free" in problem.message and "1 MiB kept free" in problem.message
    with pytest.raises(FloydError):
        preflight_disk(preset)


def test_gated_repo_without_login_stops_before_downloading(hub_cache, monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    import floydtui.hub.access as access
    from floydtui.hub import fetch_model

    hub = FakeHub(access_error=http_error(GatedRepoError, 401)).install(monkeypatch)
    monkeypatch.setattr(access, "hub_token", lambda: None)
    with pytest.raises(FloydError) as e:
        fetch_model(M_REPO, stage=1)
    assert "hf auth login" in e.value.format() and hub.downloads == []


def test_explicit_fp16_on_a_repo_without_it_is_an_error(hub_cache, monkeypatch):
    from floydtui.hub import fetch_model

    files = {k: v for k, v in REPO_FILES.items() if ".fp16" not in k}
    hub = FakeHub(files=files).install(monkeypatch)
    with pytest.raises(FloydError) as e:
        fetch_model(M_REPO, stage=1, variant="fp16")
    assert "no fp16" in e.value.format() and e.value.problems[0].key == "variant" and hub.downloads == []
    fetch_model(M_REPO, stage=1, variant="auto")
    assert "unet/diffusion_pytorch_model.safetensors" in hub.downloads


# ---- access errors ----------------------------------------------------------------
def _problem(monkeypatch, exc, token):
    import floydtui.hub.access as access

    monkeypatch.setattr(access, "hub_token", lambda: token)
    return access.access_problem(exc, M_REPO, "unet/config.json")


def test_the_four_access_failures_are_four_messages_each_with_a_fix(monkeypatch):
    import httpx2
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    no_login = _problem(monkeypatch, http_error(GatedRepoError, 401), None)
    no_licence = _problem(monkeypatch, http_error(GatedRepoError, 403), "hf_sometoken")
    no_repo = _problem(monkeypatch, http_error(RepositoryNotFoundError, 404), "hf_sometoken")
    no_network = _problem(monkeypatch, httpx2.ConnectError("name resolution failed"), None)
    via_cache = _problem(monkeypatch, LocalEntryNotFoundError("cannot find the requested files"), None)
    assert "login" in no_login.message and "hf auth login" in no_login.hint and "HF_TOKEN" in no_login.hint
    assert "licence" in no_licence.message and "https://huggingface.co/DeepFloyd/IF-I-M-v1.0" in no_licence.hint
    assert "no model" in no_repo.message and "pretrained_model_name_or_path" in no_repo.hint
    assert "no network" in no_network.message and via_cache.message == no_network.message
    messages = {p.message for p in (no_login, no_licence, no_repo, no_network)}
    assert len(messages) == 4 and all(p.hint for p in (no_login, no_licence, no_repo, no_network))
    assert _problem(monkeypatch, ValueError("not a hub error"), None) is None


# ---- tokens --------------------------------------------------------------------------
def test_redact_replaces_the_token_and_token_shaped_strings(monkeypatch):
    from floydtui.hub import redact

    monkeypatch.setenv("HF_TOKEN", "short-but-secret")
    assert redact("token=short-but-secret here") == "token=*** here"
    assert redact(f"Bearer {MARKER}") == "Bearer ***"
    assert redact("nothing to hide") == "nothing to hide"


def test_server_messages_are_redacted_in_errors(monkeypatch):
    from huggingface_hub.errors import HfHubHTTPError

    monkeypatch.setenv("HF_TOKEN", MARKER)
    problem = _problem(monkeypatch, http_error(HfHubHTTPError, 500, f"500 Server Error: echo {MARKER}"), MARKER)
    assert MARKER not in problem.format() and "***" in problem.message


def test_no_token_in_plan_or_check_output(hub_cache, monkeypatch, tmp_path):
    from floydtui.hub import disk_section

    monkeypatch.setenv("HF_TOKEN", MARKER)
    FakeHub().install(monkeypatch)
    section = disk_section(make_preset(tmp_path, min_free_disk_mib=1))
    out = json.dumps({"lines": section.lines, "data": section.data,
                      "problems": [p.to_dict() for p in section.problems]})
    assert "logged in to the hub" in out and MARKER not in out
    preset_file = tmp_path / "preset.toml"
    preset_file.write_text(make_preset(tmp_path).to_toml())
    env = {**os.environ, "HF_TOKEN": MARKER, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "floydtui", "check", str(preset_file), "--json"],
                         capture_output=True, text=True, env=env, timeout=WAIT_S)
    assert "download and disk" in run.stdout and M_REPO in run.stdout
    assert MARKER not in run.stdout + run.stderr


# ---- disk ----------------------------------------------------------------------------
def test_disk_guard_stops_under_the_threshold_with_the_numbers(monkeypatch, tmp_path):
    import floydtui.hub.disk as disk
    from floydtui.hub import DiskGuard

    guard = DiskGuard([tmp_path / "out" / "checkpoints", tmp_path / "embeds"], min_free_mib=500)
    monkeypatch.setattr(disk, "free_bytes", lambda path: 600 * disk.MIB)
    guard.check("checkpoint-000100")
    monkeypatch.setattr(disk, "free_bytes", lambda path: 300 * disk.MIB)
    with pytest.raises(FloydError) as e:
        guard.check("checkpoint-000100")
    (problem,) = e.value.problems
    assert "only 300 MiB free on" in problem.message and "min_free_disk_mib = 500" in problem.message
    assert "stopped with a saved state" in problem.message and "checkpoint-000100" in problem.message
    assert problem.key == "min_free_disk_mib" and "lower min_free_disk_mib" in problem.hint
    DiskGuard([tmp_path], 0).check("anything")  # 0 turns the guard off


def test_threshold_above_free_space_refuses_the_run_before_any_work(tmp_path):
    from floydtui.hub import preflight_disk

    preset = make_preset(tmp_path, "builtin:tiny-if-i", min_free_disk_mib=2**40)
    with pytest.raises(FloydError) as e:
        preflight_disk(preset)
    assert "not enough room" in e.value.format() and "min_free_disk_mib" in e.value.format()
    assert not (tmp_path / "out").exists() and not (tmp_path / "embeds").exists()


def test_builtin_and_local_models_plan_no_download(tmp_path):
    from floydtui.hub import disk_section, plan_download

    plan = plan_download(make_preset(tmp_path, "builtin:tiny-if-i", min_free_disk_mib=1))
    assert plan.kind == "builtin" and plan.repos == [] and not plan.problems
    assert any("nothing to download" in line for line in plan.lines())
    missing = disk_section(make_preset(tmp_path, str(tmp_path / "no-such-model"), min_free_disk_mib=1))
    assert not missing.ok and "does not exist" in missing.problems[0].message
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_index.json").write_text("{}")
    local = plan_download(make_preset(tmp_path, str(tmp_path / "model"), min_free_disk_mib=1))
    assert local.kind == "local" and not local.problems and not local.repos


def test_importing_floydtui_hub_loads_no_heavy_library():
    code = ("import sys, floydtui.hub; heavy = [m for m in ('torch', 'diffusers', 'transformers', 'textual', "
            "'huggingface_hub') if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT_S)
    assert run.returncode == 0, run.stdout + run.stderr
