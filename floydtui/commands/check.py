"""`floydtui check PRESET [--json]`: 0 trainable, 1 problems found, 2 unreadable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from floydtui.errors import FloydError


def main(args) -> int:
    from floydtui.checks import run_checks
    from floydtui.cli import parse_sets
    from floydtui.config.preset import apply_overrides, preset_from_dict, read_toml

    overrides = parse_sets(args.set)  # a bad flag is bad usage: exit 2 from the CLI
    data = read_toml(Path(args.preset))  # unreadable: exit 2 from the CLI
    try:
        preset = preset_from_dict(apply_overrides(data, overrides), source=Path(args.preset))
    except FloydError as e:
        if args.json:
            print(json.dumps({"ok": False, "problems": [p.to_dict() for p in e.problems], "sections": []}))
        else:
            sys.stderr.write(e.format() + "\n")
        return 1
    sections = run_checks(preset)
    ok = all(s.ok for s in sections)
    if args.json:
        print(json.dumps({
            "ok": ok,
            "problems": [p.to_dict() for s in sections for p in s.problems],
            "sections": [{"title": s.title, "lines": s.lines, "data": s.data,
                          "problems": [p.to_dict() for p in s.problems]} for s in sections],
        }, indent=2, default=str))
        return 0 if ok else 1
    for s in sections:
        print(f"[{s.title}] {'ok' if s.ok else 'PROBLEMS'}")
        for line in s.lines:
            print(f"  {line}")
        for p in s.problems:
            print("  " + p.format().replace("\n", "\n  "))
    n_err = sum(1 for s in sections for p in s.problems if p.is_error)
    n_warn = sum(1 for s in sections for p in s.problems if not p.is_error)
    print(f"{args.preset}: {'trainable' if ok else 'not trainable'} ({n_err} error(s), {n_warn} warning(s))")
    return 0 if ok else 1
