"""The command line (DESIGN.md section 3).

Parsing only: each command lives in `floydtui/commands/<name>.py` with a `main(args) -> int`
and is imported when chosen, so `floydtui --help` loads neither torch nor textual.
User errors (`FloydError`) print what, where and how to fix, and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from floydtui import __version__

COMMANDS = ("run", "check", "scan", "watch", "runs", "serve", "import", "export", "doctor", "generate")

_EPILOG = """commands:
  floydtui [PRESET]                 the wizard; with PRESET, opens it for editing
  floydtui run PRESET               train headless (tmux, nohup, schedulers)
  floydtui check PRESET [--json]    validate a preset, its datasets and the memory it needs
  floydtui scan PRESET [--json]     the per-image decision for every dataset file
  floydtui watch RUN_DIR            the monitor on a run directory, live or finished
  floydtui runs [DIR] [--json]      the runs under DIR (default output/): status, step, loss, start
  floydtui serve [--watch RUN_DIR]  the wizard (or the monitor) in a browser, on 127.0.0.1:8000
  floydtui import SRC... -o PRESET  SimpleTuner config.json/.toml/.env (+ multidatabackend.json)
  floydtui export PRESET -o DIR     a preset to SimpleTuner config.json + multidatabackend.json
  floydtui doctor [--json]          devices and, per flavour, the memory, verdict and time a step
  floydtui generate ...             images from a base model + LoRA

The built-in model builtin:shapes-if-i (a tiny IF pretrained on a world of coloured shapes)
runs everything on a CPU in about a minute:
  floydtui run presets/demo.toml
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # bad usage: exit 2 with a hint, never a traceback
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n  fix: see `{self.prog} --help`\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="floydtui", description="Fine-tune DeepFloyd IF with LoRA from the terminal.",
                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"floydtui {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    wiz = sub.add_parser("wizard", help="the wizard (the default command)")
    wiz.add_argument("preset", nargs="?", help="a preset to open for editing")

    run = sub.add_parser("run", help="train headless")
    run.add_argument("preset")
    run.add_argument("--output-dir", help="override [output] output_dir")
    run.add_argument("--max-train-steps", type=int, help="override [training] max_train_steps")
    run.add_argument("--resume", default="latest", help="latest (default), none, or a checkpoint folder")
    run.add_argument("--num-processes", type=int,
                     help="processes of all machines together (default: one per machine); >1 goes through accelerate")
    run.add_argument("--num-machines", type=int, help="machines taking part (default 1, or the srun step's node count)")
    run.add_argument("--machine-rank", type=int, help="this machine's number, 0 to machines-1 (default: NODE_RANK, "
                                                      "SLURM_NODEID, or 0)")
    run.add_argument("--main-process-ip", help="address of machine rank 0, reachable from all (default: MASTER_ADDR)")
    run.add_argument("--main-process-port", type=int,
                     help="port machine rank 0 listens on (default: MASTER_PORT, or 29500 with several machines)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a preset key (repeatable), e.g. --set learning_rate=1e-4")
    run.add_argument("--json", action="store_true", help="events on stdout instead of progress bars")

    for name, text in (("check", "validate a preset, its datasets and its memory"),
                       ("scan", "the per-image decision for every file")):
        c = sub.add_parser(name, help=text)
        c.add_argument("preset")
        c.add_argument("--json", action="store_true", help="machine-readable output")
        c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")

    w = sub.add_parser("watch", help="the monitor on a run directory")
    w.add_argument("run_dir")

    rs = sub.add_parser("runs", help="the run directories under a folder")
    rs.add_argument("dir", nargs="?", default="output", help="the folder to look in (default: output)")
    rs.add_argument("--json", action="store_true", help="one JSON object a line per run")

    srv = sub.add_parser("serve", help="the wizard or the monitor in a browser (textual-serve)")
    srv.add_argument("preset", nargs="?", help="a preset for the wizard to open")
    srv.add_argument("--watch", metavar="RUN_DIR", help="serve the monitor on this run directory instead")
    srv.add_argument("--host", help="address to listen on (default 127.0.0.1; any other has no authentication)")
    srv.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")

    imp = sub.add_parser("import", help="SimpleTuner config to a preset")
    imp.add_argument("sources", nargs="+", help="config.json / config.toml / config.env, multidatabackend.json")
    imp.add_argument("-o", "--output", required=True, help="the preset file to write")
    imp.add_argument("--force", action="store_true", help="overwrite an existing preset")

    exp = sub.add_parser("export", help="a preset to SimpleTuner files")
    exp.add_argument("preset")
    exp.add_argument("-o", "--output", required=True, help="folder for config.json + multidatabackend.json")

    doc = sub.add_parser("doctor", help="devices and memory estimates")
    doc.add_argument("--json", action="store_true")

    from floydtui.config.flavours import GUIDANCE

    gen = sub.add_parser("generate", help="images from a base model + LoRA")
    gen.add_argument("--base", help="base model: hub id, folder, builtin:shapes-if-i or builtin:tiny-if-i")
    gen.add_argument("--lora", help="LoRA file or run directory")
    gen.add_argument("--run", help="take the base model and LoRA from a finished run directory")
    gen.add_argument("--prompt", action="append", default=[], help="prompt (repeatable)")
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--steps", type=int, default=None,
                     help="stage I denoising steps (default 50; with --run, the run's validation_num_inference_steps)")
    gen.add_argument("--guidance", type=float, default=None,
                     help=f"stage I guidance (default {GUIDANCE[1]:g}, IFPipeline's; with --run, the run's "
                          "validation_guidance)")
    gen.add_argument("--seed", type=int, default=None,
                     help="seed of the first image; the next ones take seed + 1, ... (default 0; with --run, the "
                          "run's validation_seed)")
    gen.add_argument("--size", default=None, help="WxH of the stage I image (default: the native size)")
    gen.add_argument("--num-images", type=int, default=None,
                     help="images per prompt (default 1; with --run, the run's num_validation_images)")
    gen.add_argument("--stage2", help="stage II model to upscale with")
    gen.add_argument("--stage2-lora", help="LoRA for the stage II model")
    gen.add_argument("--stage2-steps", type=int, default=None,
                     help="stage II denoising steps (default 50; with --run of a stage II run, its "
                          "validation_num_inference_steps)")
    gen.add_argument("--stage2-guidance", type=float, default=None,
                     help=f"stage II guidance (default {GUIDANCE[2]:g}, IFSuperResolutionPipeline's; with --run of a "
                          "stage II run, its validation_guidance)")
    gen.add_argument("--image", help="upscale this image with --stage2 alone, instead of a --base image")
    clean = gen.add_mutually_exclusive_group()
    clean.add_argument("--clean-caption", dest="clean_caption", action="store_true", default=None,
                       help="clean prompts as IFPipeline does by default (the default; with --run, the run's "
                            "clean_caption)")
    clean.add_argument("--no-clean-caption", dest="clean_caption", action="store_false",
                       help="only lower-case and strip prompts (clean_caption = false)")
    gen.add_argument("--no-preview", action="store_true", help="do not draw the images in the terminal")
    gen.add_argument("-o", "--output", required=True, help="folder for the PNGs")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("wizard",) and not argv[0].startswith("-")):
        argv = ["wizard", *argv]
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not valid UTF-8 (a surrogate in Python) prints as \udcff, never a crash.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["wizard"])
    module = importlib.import_module(f"floydtui.commands.{_module_name(args.command)}")
    from floydtui.errors import FloydError

    try:
        return int(module.main(args) or 0)
    except FloydError as e:
        sys.stderr.write(e.format() + "\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("stopped by the user\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: say so plainly, keep the traceback for a report
        if os.environ.get("FLOYDTUI_DEBUG"):
            raise
        sys.stderr.write(f"floydtui: internal error: {type(e).__name__}: {e}\n"
                         "  this is a bug in floydtui; rerun with FLOYDTUI_DEBUG=1 for the traceback\n")
        return 1


def _module_name(command: str) -> str:
    return "import_" if command == "import" else command


def parse_sets(items: list[str]) -> dict:
    """`--set KEY=VALUE` items to a dict; values parse as TOML where they can."""
    from floydtui.config.preset import parse_set_value
    from floydtui.errors import FloydError, Problem

    out, problems = {}, []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(Problem(f"--set {item!r} is not KEY=VALUE", hint="e.g. --set learning_rate=1e-4"))
            continue
        out[key.strip()] = parse_set_value(value.strip())
    if problems:
        raise FloydError(problems)
    return out
