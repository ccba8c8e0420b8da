"""Atomic writes leave what a plain write would: the umask's permissions, or the file's own."""

import os
import stat

import pytest

from floydtui.fsutil import atomic_dir, atomic_path, atomic_write_text, current_umask


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_current_umask_reads_without_changing_it(umask_027):
    assert current_umask() == 0o027 and current_umask() == 0o027


def test_new_files_and_folders_get_the_umask_not_mkstemps_0600(tmp_path, umask_027):
    atomic_write_text(tmp_path / "preset.toml", "x = 1\n")
    with atomic_path(tmp_path / "pytorch_lora_weights.safetensors") as tmp:
        tmp.write_bytes(b"weights")
    with atomic_dir(tmp_path / "checkpoint-000010") as tmp:
        (tmp / "state.json").write_text("{}")
    assert mode(tmp_path / "preset.toml") == 0o640
    assert mode(tmp_path / "pytorch_lora_weights.safetensors") == 0o640
    assert mode(tmp_path / "checkpoint-000010") == 0o750
    plain = tmp_path / "plain"
    plain.write_text("")
    assert mode(plain) == mode(tmp_path / "preset.toml")  # as a plain write


def test_a_rewritten_file_or_folder_keeps_its_own_mode(tmp_path, umask_027):
    secret = tmp_path / "webhooks.toml"
    secret.write_text("old")
    secret.chmod(0o600)
    atomic_write_text(secret, "new")
    assert secret.read_text() == "new" and mode(secret) == 0o600
    shared = tmp_path / "run"
    shared.mkdir()
    shared.chmod(0o775)
    with atomic_dir(shared) as tmp:
        (tmp / "a").write_text("a")
    assert (shared / "a").read_text() == "a" and mode(shared) == 0o775


def test_private_writes_are_for_the_owner_only_even_over_a_shared_file(tmp_path, umask_027):
    atomic_write_text(tmp_path / "new.toml", "url = 1", private=True)
    shared = tmp_path / "shared.toml"
    shared.write_text("old")
    shared.chmod(0o664)
    atomic_write_text(shared, "url = 1", private=True)
    assert mode(tmp_path / "new.toml") == 0o600 and mode(shared) == 0o600
