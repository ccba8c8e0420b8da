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
    try:
        _, problems = write_preset_file(data, out)
    except OSError as e:
        raise FloydError.one(f"cannot write {out}: {e.strerror or e}",
                             hint="choose an -o in a folder that you can write to") from None
    for n in notes + problems:
        sys.stderr.write(n.format() + "\n")
    n_datasets = len(data.get("datasets", []))
    if problems:
        print(f"wrote {out} ({n_datasets} dataset(s)); it cannot train yet ({len(problems)} problem(s) above): "
              f"fix them in {out}, then: floydtui check {out}")
    else:
        print(f"wrote {out} ({n_datasets} dataset(s)); check it with: floydtui check {out}")
    return 0
