"""`floydtui import SRC... -o PRESET`: SimpleTuner files to a preset."""

from __future__ import annotations

import sys
from pathlib import Path

from floydtui.errors import FloydError


def main(args) -> int:
    from floydtui.config.simpletuner import import_simpletuner, write_preset_file

    out = Path(args.output)
    if out.exists() and not args.force:
        raise FloydError.one(f"{out} exists", hint="choose another -o, or pass --force to overwrite it")
    data, notes = import_simpletuner(args.sources)
    for n in notes:
        sys.stderr.write(n.format() + "\n")
    write_preset_file(data, out)
    print(f"wrote {out} ({len(data.get('datasets', []))} dataset(s)); check it with: floydtui check {out}")
    return 0
