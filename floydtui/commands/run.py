"""`floydtui run PRESET`: train headless (DESIGN.md section 3).

Exit codes: 0 done, 1 failed, 2 bad usage or invalid preset, 130 stopped by the user
(after a checkpoint). Events always go to OUTPUT_DIR/events.jsonl; with --json they go to
stdout too, otherwise a terminal gets progress bars and a pipe gets plain lines.
`--num-processes N` (N > 1) or `--num-machines M` (M > 1) starts the processes of this
machine through accelerate's launcher; only global rank 0 writes events, checkpoints and
the LoRA. Started by torchrun (or any launcher that sets RANK, WORLD_SIZE and LOCAL_RANK),
it trains as the rank it was given. Never imports textual.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from floydtui.errors import FloydError, Problem
from floydtui.fsutil import atomic_write_text

EXIT = {"completed": 0, "failed": 1, "stopped": 130}
LAUNCHED_ENV = "FLOYDTUI_LAUNCHED"  # set for the processes accelerate starts, so they train instead of relaunching
RUN_PID_ENV = "FLOYDTUI_RUN_PID"  # the pid of the `floydtui run` the user started, for run_start's `pid`
STATUS_ENV = "FLOYDTUI_STATUS_FILE"  # where the machine's first process leaves its exit code for the launcher
DEFAULT_PORT = 29500  # torchrun's and accelerate's: machines must agree on it without talking first


@dataclass
class Launch:
    """How many processes on how many machines, and where machine rank 0 listens."""

    num_processes: int  # in all, over every machine (accelerate's meaning)
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None


def under_launcher(env=os.environ) -> bool:
    """True when torchrun (or a launcher like it) started this process as one rank."""
    return not env.get(LAUNCHED_ENV) and "WORLD_SIZE" in env and "RANK" in env and "LOCAL_RANK" in env


def _env_int(env, name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise FloydError.one(f"environment variable {name}={value!r} is not a whole number", where=name,
                             hint=f"unset {name} or give it a number") from None


def launch_plan(args, env=os.environ) -> Launch:
    """The processes to start, from the flags, else torchrun's/accelerate's/Slurm's variables.

    MASTER_ADDR and MASTER_PORT give rank 0's address, NODE_RANK this machine's rank. Inside an
    `srun` step (SLURM_STEP_NUM_NODES set: a bare batch script runs on one node only),
    SLURM_STEP_NUM_NODES and SLURM_NODEID give the machines and this one's rank.
    """
    in_step = "SLURM_STEP_NUM_NODES" in env
    machines = args.num_machines if args.num_machines is not None else \
        (_env_int(env, "SLURM_STEP_NUM_NODES") if in_step else None) or 1
    rank = args.machine_rank if args.machine_rank is not None else _env_int(env, "NODE_RANK")
    if rank is None:
        rank = (_env_int(env, "SLURM_NODEID") if in_step else None) or 0
    plan = Launch(num_processes=args.num_processes if args.num_processes is not None else machines,
                  num_machines=machines, machine_rank=rank,
                  main_process_ip=args.main_process_ip or env.get("MASTER_ADDR") or None,
                  main_process_port=args.main_process_port if args.main_process_port is not None
                  else _env_int(env, "MASTER_PORT"))
    problems = []
    tasks = _env_int(env, "SLURM_STEP_NUM_TASKS") if in_step else None
    if tasks and tasks > plan.num_machines:
        problems.append(Problem(f"this srun step runs {tasks} tasks on {plan.num_machines} node(s); floydtui run "
                                "starts each node's processes itself", where="srun",
                                hint="run one task per node (#SBATCH --ntasks-per-node=1) and pass --num-processes "
                                     "(GPUs per node x nodes); see docs/scale.md"))
    if plan.num_processes < 1:
        problems.append(Problem(f"--num-processes {plan.num_processes}: must be 1 or more", where="--num-processes"))
    if plan.num_machines < 1:
        problems.append(Problem(f"--num-machines {plan.num_machines}: must be 1 or more", where="--num-machines"))
    elif not 0 <= plan.machine_rank < plan.num_machines:
        problems.append(Problem(f"--machine-rank {plan.machine_rank}: must be 0 to {plan.num_machines - 1} "
                                f"for {plan.num_machines} machine(s)", where="--machine-rank",
                                hint="number the machines 0, 1, ...; machine 0 is the one at --main-process-ip"))
    elif plan.num_processes >= 1 and plan.num_processes % plan.num_machines:
        problems.append(Problem(
            f"--num-processes {plan.num_processes} does not split evenly over {plan.num_machines} machines",
            where="--num-processes", hint="--num-processes counts the processes of all machines together: give "
                                          f"a multiple of {plan.num_machines} (e.g. GPUs per machine x machines)"))
    if plan.num_machines > 1 and not plan.main_process_ip:
        problems.append(Problem(f"{plan.num_machines} machines need the address of machine rank 0",
                                where="--main-process-ip",
                                hint="pass --main-process-ip ADDRESS (reachable from every machine) or set "
                                     "MASTER_ADDR; under Slurm: export MASTER_ADDR=$(scontrol show hostnames "
                                     "\"$SLURM_JOB_NODELIST\" | head -n 1)"))
    if plan.main_process_port is not None and not 1 <= plan.main_process_port <= 65535:
        problems.append(Problem(f"--main-process-port {plan.main_process_port}: must be 1 to 65535",
                                where="--main-process-port"))
    if problems:
        raise FloydError(problems)
    return plan


def load(args):
    """The preset with --output-dir, --max-train-steps and --set applied."""
    from floydtui.cli import parse_sets
    from floydtui.config.preset import load_preset

    overrides = parse_sets(args.set)
    if args.output_dir:
        overrides["output_dir"] = str(Path(args.output_dir).resolve())
    if args.max_train_steps is not None:
        overrides["max_train_steps"] = args.max_train_steps
    return load_preset(args.preset, overrides=overrides)


def main(args) -> int:
    if under_launcher():
        flags = [f for f, v in (("--num-processes", args.num_processes), ("--num-machines", args.num_machines),
                                ("--machine-rank", args.machine_rank)) if v is not None]
        if flags:
            raise FloydError.one(f"{', '.join(flags)} given to a process that a launcher (torchrun) started",
                                 where=flags[0], hint="the launcher already decided the processes and machines: "
                                                      "drop these flags, or start floydtui run without torchrun")
        return run_and_report(load(args), args)
    plan = None if os.environ.get(LAUNCHED_ENV) else launch_plan(args)
    preset = load(args)
    if plan and (plan.num_processes > 1 or plan.num_machines > 1):
        return relaunch(args, preset, plan)
    return run_and_report(preset, args)


def run_and_report(preset, args) -> int:
    """`run`, then the exit code left for the relaunching `floydtui run` by this machine's first process.

    The launcher's own exit code does not tell "stopped" from "failed", and on a machine other
    than rank 0 there may be no events file to read it from.
    """
    code = 1  # an internal error raises: the launcher then reports a failure
    status_file = os.environ.get(STATUS_ENV)
    try:
        code = run(preset, args)
        # The code travels in the file; a non-zero exit would only make the launcher print a traceback.
        return 0 if status_file else code
    finally:
        if status_file and os.environ.get("LOCAL_RANK", "0") == "0":
            atomic_write_text(Path(status_file), str(code))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


# What the disk or the file system says when a write cannot happen: the user's to fix, not a bug.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST}


def write_problem(e: OSError) -> Problem:
    """A write that failed mid-run, said as what, where and how to fix."""
    what = e.filename or "a file"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return Problem(f"the disk filled up writing {what}", where=str(what),
                       hint="free space there and run the same command again: it resumes from the last checkpoint "
                            "(min_free_disk_mib stops a run cleanly before the disk is full: raise it)")
    return Problem(f"could not write {what}: {e.strerror}", where=str(what),
                   hint="make output_dir and the text-embed cache_dir folders this user can write, then run the "
                        "same command again: it resumes from the last checkpoint")


def _internal(events, end, e: Exception) -> None:
    """A bug: recorded in the events; the caller re-raises it for cli's internal-error message."""
    events.emit("error", message=f"internal error: {type(e).__name__}: {e}",
                hint="this is a bug in floydtui; rerun with FLOYDTUI_DEBUG=1 for the traceback")
    end("failed", error=f"{type(e).__name__}: {e}")


def run(preset, args) -> int:
    """Train in this process (one of N under the launcher); events, exit code."""
    from floydtui.events import EventWriter

    # Until the trainer installs its own handler, SIGTERM (a scheduler, the TUI) stops at once like
    # Ctrl-C, and the run still ends with a run_end event that a watcher can see.
    signal.signal(signal.SIGTERM, _interrupt)
    main_process = int(os.environ.get("RANK", "0")) == 0  # accelerate's launcher sets RANK per process
    from floydtui.hub import folder_problems

    problems = folder_problems(preset)  # before the events file, which lives in output_dir
    if problems:
        raise FloydError(problems)
    events = EventWriter(preset.output_dir / "events.jsonl", echo_json=args.json, enabled=main_process)
    view = reporter = None
    if main_process and not args.json:
        from floydtui.train.console import ConsoleView

        view = ConsoleView()
        events.listeners.append(view)

    def end(status: str, **fields) -> None:
        if reporter:  # its end message and webhook failures come before run_end, the stream's last event
            reporter.finish(status, **fields)
        events.emit("run_end", status=status, **fields)

    try:
        if main_process:
            from floydtui.train.reporting import Reporter

            reporter = Reporter.for_run(preset, events)  # trackers and webhooks; only rank 0 reports
        import torch
        from accelerate import PartialState

        from floydtui.train.models import quiet_libraries
        from floydtui.train.trainer import train

        quiet_libraries()
        PartialState(cpu=not torch.cuda.is_available())
        status = train(preset, events, resume=args.resume)
        fields = {"lora_path": str(preset.output_dir / "pytorch_lora_weights.safetensors")} \
            if status == "completed" else {}
        end(status, **fields)
        return EXIT[status]
    except KeyboardInterrupt:  # before training started: nothing to checkpoint yet
        end("stopped")
        return EXIT["stopped"]
    except FloydError as e:
        if not main_process:  # its events are off: say it where this machine's log shows it
            sys.stderr.write(f"rank {os.environ.get('RANK')}: {e.format()}\n")
        for p in e.problems:
            events.emit("error" if p.is_error else "warning", message=p.message, hint=p.hint)
        end("failed", error=e.problems[0].message if e.problems else str(e))
        return 2
    except OSError as e:  # a full disk or an unwritable folder mid-run: the user's to fix
        if e.errno not in WRITE_ERRNOS:
            _internal(events, end, e)
            raise
        problem = write_problem(e)
        if not main_process:
            sys.stderr.write(f"rank {os.environ.get('RANK')}: {problem.format()}\n")
        events.emit("error", message=problem.message, hint=problem.hint)
        end("failed", error=problem.message)
        return 2
    except Exception as e:  # a bug: recorded in the events, re-raised for cli's internal-error message
        _internal(events, end, e)
        raise
    finally:
        if reporter:
            reporter.close()
        if view:
            view.close()
        events.close()


def relaunch(args, preset, plan: Launch) -> int:
    """Start this machine's processes through accelerate's launcher and return the run's exit code."""
    port = plan.main_process_port or (free_port() if plan.num_machines == 1 else DEFAULT_PORT)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           str(plan.num_processes), "--num_machines", str(plan.num_machines), "--machine_rank",
           str(plan.machine_rank), "--dynamo_backend", "no", "--mixed_precision", preset.training["mixed_precision"],
           "--main_process_port", str(port)]
    if plan.num_machines > 1:
        # The processes of each machine find the others through machine rank 0's address.
        cmd += ["--main_process_ip", plan.main_process_ip, "--max_restarts", "0"]
    with tempfile.TemporaryDirectory(prefix="floydtui-run-") as tmp:
        status_file = Path(tmp) / "status"
        env = {**os.environ, LAUNCHED_ENV: "1", RUN_PID_ENV: str(os.getpid()), STATUS_ENV: str(status_file)}
        # Ctrl-C reaches every process of the terminal's group; the children checkpoint and stop,
        # and tell the processes of the other machines to do the same.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        proc = subprocess.Popen([*cmd, "-m", "floydtui", *rebuild_argv(args)], env=env)
        signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGINT, old)
        if status_file.is_file():
            return int(status_file.read_text())
    return 1 if code else 0


def rebuild_argv(args) -> list[str]:
    """This command's arguments for the launched processes (without --num-processes)."""
    argv = ["run", str(Path(args.preset).resolve()), "--resume", args.resume]
    if args.output_dir:
        argv += ["--output-dir", str(Path(args.output_dir).resolve())]
    if args.max_train_steps is not None:
        argv += ["--max-train-steps", str(args.max_train_steps)]
    for item in args.set:
        argv += ["--set", item]
    if args.json:
        argv.append("--json")
    return argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
