"""Fixtures every test module shares: an isolated environment, the session's tiny-model cache,
and the guarantee that no process a test started outlives it."""

import os
from pathlib import Path

import psutil
import pytest

from helpers import REPO, end_process, end_started, leftover_children, write_image

SESSION_CACHE = "floydtui-cache"  # under pytest's base temp unless FLOYDTUI_TEST_CACHE names one


@pytest.fixture(scope="session", autouse=True)
def floydtui_cache(tmp_path_factory) -> Path:
    """One FLOYDTUI_CACHE for the whole run: the tiny models are built once and every test shares them.

    Set here, before any module fixture, so module fixtures build into it without setting it again;
    the rest of the environment is kept free of a developer's own settings, hub login and GPU.
    """
    cache = Path(os.environ.get("FLOYDTUI_TEST_CACHE") or tmp_path_factory.getbasetemp() / SESSION_CACHE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOYDTUI_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        mp.delenv("FLOYDTUI_ASSUME_GPU", raising=False)
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        yield cache


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, floydtui_cache):
    """Each test starts with the session's cache and no assumed GPU, whatever a test before set by hand."""
    monkeypatch.setenv("FLOYDTUI_CACHE", str(floydtui_cache))
    monkeypatch.delenv("FLOYDTUI_ASSUME_GPU", raising=False)


@pytest.fixture(scope="session")
def tiny_i(floydtui_cache) -> Path:
    """The built-in tiny stage I model folder, built once into the session's cache."""
    from floydtui.train.tiny import ensure_builtin

    return ensure_builtin("builtin:tiny-if-i")


@pytest.fixture(scope="session")
def tiny_ii(floydtui_cache) -> Path:
    """The built-in tiny stage II model folder, built once into the session's cache."""
    from floydtui.train.tiny import ensure_builtin

    return ensure_builtin("builtin:tiny-if-ii")


@pytest.fixture(autouse=True)
def _end_started_processes():
    """Every process started through helpers.spawn is ended after its test, passed or failed; any
    other process the test left alive is killed and fails the test, by name."""
    before = set(leftover_children())
    yield
    end_started()
    left = {p: cmd for p, cmd in leftover_children().items() if p not in before}
    for proc in left:
        end_process(proc.pid)
    psutil.wait_procs(list(left), timeout=10)
    assert not left, describe_left(left)


@pytest.fixture(scope="session", autouse=True)
def _no_process_left_behind():
    """At the end of the run, no child of pytest is alive: any left is killed and named in a failure."""
    yield
    left = leftover_children()
    for proc in left:
        end_process(proc.pid)
    psutil.wait_procs(list(left), timeout=10)
    assert not left, describe_left(left)


def describe_left(left: dict) -> str:
    return "processes left running (now killed): " + "; ".join(f"pid {p.pid}: {' '.join(cmd)}"
                                                                for p, cmd in left.items())


@pytest.fixture
def mixed(tmp_path) -> Path:
    """12 landscape, 8 portrait and 5 square images, each with its own pattern."""
    folder = tmp_path / "imgs"
    for i in range(12):
        write_image(folder / f"land{i:02d}.png", 200, 150, seed=i)
    for i in range(8):
        write_image(folder / f"port{i:02d}.png", 150, 200, seed=100 + i)
    for i in range(5):
        write_image(folder / f"sq{i:02d}.png", 128, 128, seed=200 + i)
    return tmp_path


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty huggingface_hub cache of the test's own (HF_HUB_CACHE)."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def repo() -> Path:
    return REPO
