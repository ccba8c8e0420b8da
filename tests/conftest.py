import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """Keep a developer's own settings, hub cache and GPU out of tests."""
    cache = tmp_path_factory.getbasetemp() / "floydtui-cache"
    monkeypatch.setenv("FLOYDTUI_CACHE", os.environ.get("FLOYDTUI_TEST_CACHE", str(cache)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("FLOYDTUI_ASSUME_GPU", raising=False)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def repo() -> Path:
    return REPO
