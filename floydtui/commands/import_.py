"""`floydtui import SRC... -o PRESET`: SimpleTuner files to a preset."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from floydtui.errors import FloydError, Problem


def main(args) -> int:
    from floydtui.config.simpletuner import import_simpletuner, write_preset_file

    out = Path(args.output)
    if out.exists() and not args.force:
        raise FloydError.one(f"{out} exists", hint="choose another -o, or pass --force to overwrite it")
    data, notes = import_simpletuner(args.sources)
    for n in notes:
        sys.stderr.write(n.format() + "\n")
    try:
        write_preset_file(data, out)
    except FloydError as e:
        # The values came from the SimpleTuner files, not from the preset that was never written.
        origin = " + ".join(str(s) for s in args.sources)
        problems = [dataclasses.replace(p, where=p.where.replace(str(out), origin, 1)) for p in e.problems]
        raise FloydError(problems + [Problem(
            f"nothing was written to {out}", hint="fix those values in the SimpleTuner files "
            "(the keys have the same names there), then import again")]) from None
    except OSError as e:
        raise FloydError.one(f"cannot write {out}: {e.strerror or e}",
                             hint="choose an -o in a folder that you can write to") from None
    print(f"wrote {out} ({len(data.get('datasets', []))} dataset(s)); check it with: floydtui check {out}")
    return 0
