"""`floydtui runs [DIR] [--json]`: the run directories under DIR with status, step, last loss, start.

Headless (no Textual): it reads each run's events.jsonl. Exit 0, or 2 when DIR is not a folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from floydtui.errors import FloydError


def main(args) -> int:
    from floydtui.runs import find_runs, format_runs

    root = Path(args.dir).expanduser()
    if not root.is_dir():
        raise FloydError.one(f"no folder {root}", where="runs",
                             hint="pass the folder that holds your runs' output_dir folders, e.g. floydtui runs "
                                  "output (a relative output_dir is relative to its preset's folder)")
    runs = find_runs(root)
    if args.json:
        for run in runs:
            sys.stdout.write(json.dumps(run.to_json()) + "\n")
    else:
        sys.stdout.write("\n".join(format_runs(runs, root)) + "\n")
        if runs:
            sys.stdout.write(f"open one with: floydtui watch {runs[0].path}\n")
    return 0
