"""`floydtui watch RUN_DIR`: the monitor on a run directory, live or finished.

It only reads RUN_DIR/events.jsonl, so it can attach from another SSH session, and closing
it leaves the run alone.
"""

from __future__ import annotations

from pathlib import Path

from floydtui.errors import FloydError


def main(args) -> int:
    run_dir = Path(args.run_dir).expanduser()
    if not run_dir.is_dir():
        raise FloydError.one(f"no run directory {run_dir}", where="watch",
                             hint="pass a run's output_dir (it holds events.jsonl), e.g. floydtui watch output/demo")
    from floydtui.tui.app import create_app

    create_app(run_dir=run_dir).run()
    return 0
