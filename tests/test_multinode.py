"""Several machines through accelerate's launcher, played by processes on 127.0.0.1 (gloo, CPU).

Each "machine" is its own `floydtui run --num-machines 2 --machine-rank R`, in its own process
group, as it would be on its own host; they meet at machine rank 0's address and port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from floydtui.commands.run import launch_plan
from floydtui.errors import FloydError
from floydtui.events import read_events
from test_train import lora_tensors, write_preset

REPO = Path(__file__).resolve().parent.parent
NO_VALIDATION = ("--set", "validation_steps=0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`floydtui run ARGS --json` as its own process group (a machine's terminal)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLOYDTUI_DEBUG": "1", **(env or {})}
    for name in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, "-m", "floydtui", "run", *args, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True)


def machines(preset: Path, out: Path, port: int) -> list[subprocess.Popen]:
    """Machine rank 0 and 1 of a two-machine run, one process each, sharing one filesystem."""
    common = ("--output-dir", str(out), "--num-machines", "2", "--main-process-ip", "127.0.0.1",
              "--main-process-port", str(port), *NO_VALIDATION)
    return [start(str(preset), *common, "--machine-rank", str(rank)) for rank in (0, 1)]


def separate_machines(homes: list[Path], port: int) -> list[subprocess.Popen]:
    """Machine rank 0 and 1 sharing nothing: each its own copy of the project, caches and output."""
    return [start(str(home / "preset.toml"), "--output-dir", str(home / "out"), "--num-machines", "2",
                  "--machine-rank", str(rank), "--main-process-ip", "127.0.0.1", "--main-process-port", str(port),
                  *NO_VALIDATION, env={"FLOYDTUI_CACHE": str(home / "floydtui-cache")})
            for rank, home in enumerate(homes)]


def end_all(procs) -> None:
    """Every process group still running, ended (the launcher and its ranks with it)."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=60)
        for stream in (proc.stdout, proc.stderr):
            stream.close()


def wait_all(procs, timeout: float = 400) -> list[tuple[int, str]]:
    """(exit code, stderr) of each, once all have exited; both are read while they run."""
    import threading

    errs = [""] * len(procs)

    def drain(i, proc):
        proc.stdout.read()
        errs[i] = proc.stderr.read()

    threads = [threading.Thread(target=drain, args=(i, p), daemon=True) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"waited {timeout}s for every machine's floydtui run to exit; exit codes so far: "
                        f"{[p.poll() for p in procs]}")
    for t in threads:
        t.join(timeout=30)
    return [(p.returncode, e) for p, e in zip(procs, errs)]


def assert_same_lora(a: Path, b: Path) -> None:
    x, y = lora_tensors(a), lora_tensors(b)
    assert x.keys() == y.keys()
    for key in x:
        torch.testing.assert_close(x[key], y[key], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def one_machine(tmp_path_factory):
    """A preset and the LoRA of its 2-process run on one machine (the reference)."""
    tmp = tmp_path_factory.mktemp("multinode")
    preset = write_preset(tmp, steps=4)
    proc = start(str(preset), "--num-processes", "2", "--output-dir", str(tmp / "one"), *NO_VALIDATION)
    try:
        [(code, err)] = wait_all([proc])
    finally:
        end_all([proc])
    assert code == 0, err
    return SimpleNamespace(preset=preset, tmp=tmp, run=tmp / "one")


@pytest.mark.slow
def test_two_machines_train_the_lora_of_two_processes_on_one(one_machine):
    out = one_machine.tmp / "two"
    procs = machines(one_machine.preset, out, free_port())
    try:
        results = wait_all(procs)
    finally:
        end_all(procs)
    assert [code for code, _ in results] == [0, 0], results
    events = read_events(out / "events.jsonl")
    assert [e["type"] for e in events].count("run_start") == 1  # global rank 0 alone writes
    assert next(e for e in events if e["type"] == "run_start")["world_size"] == 2
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3, 4]
    assert_same_lora(one_machine.run, out)


@pytest.mark.slow
def test_a_stop_on_machine_zero_stops_both_and_both_resume_without_a_shared_filesystem(one_machine, tmp_path):
    homes = [tmp_path / "machine-0", tmp_path / "machine-1"]
    for home in homes:  # the same preset and images on each machine, in its own folder
        write_preset(home, steps=4)
    out = homes[0] / "out"
    procs = separate_machines(homes, free_port())
    try:
        seen = []
        for line in procs[0].stdout:  # rank 0's events, as --json prints them
            seen.append(line)
            if '"type": "step"' in line:
                os.killpg(procs[0].pid, signal.SIGINT)  # Ctrl-C in machine 0's terminal
                break
        else:
            pytest.fail(f"machine 0 ended before a step; it printed: {seen[-5:]}")
        results = wait_all(procs)
    finally:
        end_all(procs)
    assert [code for code, _ in results] == [130, 130], results  # machine 1 stopped too, and knows why
    events = read_events(out / "events.jsonl")
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    assert events[-2]["type"] == "checkpoint"
    stopped_at = events[-2]["step"]
    assert stopped_at < 4
    # Machine 1 filled its own caches and wrote no run directory: rank 0 alone writes.
    assert not (homes[1] / "out").exists()
    assert sorted(p.name for p in (homes[1] / "cache").rglob("*.safetensors")) == \
        sorted(p.name for p in (homes[0] / "cache").rglob("*.safetensors"))
    assert list((homes[1] / "floydtui-cache" / "pixels").rglob("*.px"))

    procs = separate_machines(homes, free_port())  # machine 1 has no checkpoint: rank 0 sends it
    try:
        results = wait_all(procs)
    finally:
        end_all(procs)
    assert [code for code, _ in results] == [0, 0], results
    events = read_events(out / "events.jsonl")
    second = [i for i, e in enumerate(events) if e["type"] == "run_start"][-1]
    assert next(e["step"] for e in events[second:] if e["type"] == "step") == stopped_at + 1
    assert not (homes[1] / "out").exists()
    assert_same_lora(one_machine.run, out)


@pytest.mark.slow
def test_torchrun_starts_the_ranks_and_each_trains_as_the_rank_it_was_given(one_machine):
    out = one_machine.tmp / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLOYDTUI_DEBUG": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                             "--master-port", str(free_port()), "-m", "floydtui", "run", str(one_machine.preset),
                             "--output-dir", str(out), "--json", *NO_VALIDATION], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True)
    try:
        [(code, err)] = wait_all([proc])
    finally:
        end_all([proc])
    assert code == 0, err
    events = read_events(out / "events.jsonl")
    assert [e["type"] for e in events].count("run_start") == 1
    assert next(e for e in events if e["type"] == "run_start")["world_size"] == 2
    assert_same_lora(one_machine.run, out)


def args(**given):
    base = dict(num_processes=None, num_machines=None, machine_rank=None, main_process_ip=None,
                main_process_port=None)
    return SimpleNamespace(**{**base, **given})


def test_launch_plan_reads_flags_then_torchrun_and_slurm_variables():
    plan = launch_plan(args(num_machines=2, machine_rank=1, main_process_ip="10.0.0.1"), env={})
    assert (plan.num_processes, plan.num_machines, plan.machine_rank, plan.main_process_ip) == (2, 2, 1, "10.0.0.1")
    env = {"MASTER_ADDR": "node-a", "MASTER_PORT": "29600", "NODE_RANK": "1"}
    plan = launch_plan(args(num_machines=2, num_processes=16), env=env)
    assert (plan.main_process_ip, plan.main_process_port, plan.machine_rank) == ("node-a", 29600, 1)
    slurm = {"SLURM_STEP_NUM_NODES": "4", "SLURM_NODEID": "3", "MASTER_ADDR": "node-a"}
    plan = launch_plan(args(num_processes=32), env=slurm)
    assert (plan.num_machines, plan.machine_rank, plan.num_processes) == (4, 3, 32)
    # A batch script outside srun is one node: its SLURM_NODEID says nothing about the machines.
    assert launch_plan(args(), env={"SLURM_NNODES": "4", "SLURM_NODEID": "0"}).num_machines == 1
    assert launch_plan(args(machine_rank=0, num_machines=2, main_process_ip="a"),
                       env=slurm).machine_rank == 0  # flags win


@pytest.mark.parametrize("given, env, says", [
    (dict(num_machines=2), {}, "2 machines need the address of machine rank 0"),
    (dict(num_machines=2, machine_rank=2, main_process_ip="a"), {}, "--machine-rank 2: must be 0 to 1"),
    (dict(num_machines=2, num_processes=3, main_process_ip="a"), {}, "does not split evenly over 2 machines"),
    (dict(num_processes=0), {}, "--num-processes 0: must be 1 or more"),
    (dict(num_machines=2, main_process_ip="a", main_process_port=70000), {}, "must be 1 to 65535"),
    (dict(), {"SLURM_STEP_NUM_NODES": "x"}, "SLURM_STEP_NUM_NODES='x' is not a whole number"),
    (dict(), {"SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NUM_TASKS": "16", "MASTER_ADDR": "a"},
     "this srun step runs 16 tasks on 2 node(s)"),
])
def test_launch_plan_mistakes_say_what_and_how(given, env, says):
    with pytest.raises(FloydError) as e:
        launch_plan(args(**given), env=env)
    assert says in e.value.format()


def test_a_bad_flag_on_the_command_line_is_a_message_not_a_traceback(tmp_path):
    preset = write_preset(tmp_path, steps=1)
    done = subprocess.run([sys.executable, "-m", "floydtui", "run", str(preset), "--num-machines", "2"],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if k != "MASTER_ADDR"})
    assert done.returncode == 2
    assert "need the address of machine rank 0" in done.stderr and "--main-process-ip" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_a_bucket_too_small_for_every_process_names_the_bucket_and_the_numbers(tmp_path):
    from floydtui.config.preset import load_preset
    from floydtui.data.dataset import TrainingData

    data = TrainingData(load_preset(write_preset(tmp_path, images=5)))
    assert data.rank_feed_problems(2, 2) == []  # 5 samples feed 2 processes a batch of 2
    [problem] = data.rank_feed_problems(2, 3)
    assert problem.message == ("bucket 32x32 has 5 sample(s), fewer than train_batch_size 2 x 3 processes = 6: "
                               "it cannot feed every process a full batch")
    assert problem.where == "[[datasets]] 'shapes'" and problem.key == "train_batch_size"
    assert problem.hint.startswith("lower train_batch_size to 1, or run on 2 process(es), or add images")


@pytest.mark.slow
def test_a_run_whose_buckets_cannot_feed_every_process_stops_with_that_message(tmp_path):
    preset = write_preset(tmp_path, images=3)
    proc = start(str(preset), "--num-processes", "2")
    try:
        out, err = proc.communicate(timeout=400)
    finally:
        end_all([proc])
    assert proc.returncode == 2, err
    errors = [json.loads(line) for line in out.splitlines() if '"type": "error"' in line]
    assert errors and errors[0]["message"].startswith("bucket 32x32 has 3 sample(s), fewer than train_batch_size 2 "
                                                      "x 2 processes = 4")
    assert "lower train_batch_size to 1" in errors[0]["hint"]
