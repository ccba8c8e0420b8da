"""`floydtui run PRESET`: train headless (DESIGN.md section 3).

Exit codes: 0 done, 1 failed, 2 bad usage or invalid preset, 130 stopped by the user
(after a checkpoint). Events always go to OUTPUT_DIR/events.jsonl; with --json they go to
stdout too, otherwise a terminal gets progress bars and a pipe gets plain lines.
`--num-processes N` (N > 1) starts N copies of this command through accelerate's
launcher; only the main one writes events, checkpoints and the LoRA. Never imports textual.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from floydtui.errors import FloydError

EXIT = {"completed": 0, "failed": 1, "stopped": 130}
LAUNCHED_ENV = "FLOYDTUI_LAUNCHED"  # set for the processes accelerate starts, so they train instead of relaunching
RUN_PID_ENV = "FLOYDTUI_RUN_PID"  # the pid of the `floydtui run` the user started, for run_start's `pid`


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
    if args.num_processes < 1:
        raise FloydError.one(f"--num-processes {args.num_processes}: must be 1 or more", where="--num-processes")
    preset = load(args)
    if args.num_processes > 1 and not os.environ.get(LAUNCHED_ENV):
        return relaunch(args, preset)
    return run(preset, args)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(preset, args) -> int:
    """Train in this process (one of N under the launcher); events, exit code."""
    from floydtui.events import EventWriter

    # Until the trainer installs its own handler, SIGTERM (a scheduler, the TUI) stops at once like
    # Ctrl-C, and the run still ends with a run_end event that a watcher can see.
    signal.signal(signal.SIGTERM, _interrupt)
    main_process = int(os.environ.get("RANK", "0")) == 0  # accelerate's launcher sets RANK per process
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
        for p in e.problems:
            events.emit("error" if p.is_error else "warning", message=p.message, hint=p.hint)
        end("failed", error=e.problems[0].message if e.problems else str(e))
        return 2
    except Exception as e:  # a bug: recorded in the events, re-raised for cli's internal-error message
        events.emit("error", message=f"internal error: {type(e).__name__}: {e}",
                    hint="this is a bug in floydtui; rerun with FLOYDTUI_DEBUG=1 for the traceback")
        end("failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        if reporter:
            reporter.close()
        if view:
            view.close()
        events.close()


def relaunch(args, preset) -> int:
    """Start N processes through accelerate's launcher and return the run's exit code.

    The launcher's own exit code does not tell "stopped" from "failed", so it comes from
    the run_end event the main process wrote.
    """
    from floydtui.events import read_events

    events_path = preset.output_dir / "events.jsonl"
    before = len(read_events(events_path)) if events_path.exists() else 0
    argv = rebuild_argv(args)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
           str(args.num_processes), "--num_machines", "1", "--dynamo_backend", "no", "--mixed_precision",
           preset.training["mixed_precision"], "--main_process_port", str(free_port()), "-m", "floydtui", *argv]
    env = {**os.environ, LAUNCHED_ENV: "1", RUN_PID_ENV: str(os.getpid())}
    # Ctrl-C reaches every process of the terminal's group; the children checkpoint and stop.
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    proc = subprocess.Popen(cmd, env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old)
    ends = [e for e in read_events(events_path)[before:] if e["type"] == "run_end"] if events_path.exists() else []
    if ends:
        status = ends[-1]["status"]
        if status == "failed":
            return 2 if any(e["type"] == "error" and not e["message"].startswith("internal error")
                            for e in read_events(events_path)[before:]) else 1
        return EXIT[status]
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
