"""`floydtui export PRESET -o DIR`: a preset to SimpleTuner's config.json + multidatabackend.json."""

from __future__ import annotations

from pathlib import Path

from floydtui.errors import FloydError


def main(args) -> int:
    from floydtui.config.preset import load_preset
    from floydtui.config.reporting import webhook_source
    from floydtui.config.simpletuner import export_simpletuner, relative_paths

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise FloydError.one(f"{out} is a file; export writes config.json and multidatabackend.json into a folder",
                             hint="give -o a folder (created if missing)")
    preset = load_preset(args.preset)
    try:
        written = export_simpletuner(preset, args.output)
    except OSError as e:
        raise FloydError.one(f"cannot write to {args.output}: {e.strerror or e}", where=e.filename or "",
                             hint="-o names a folder (created if missing) that you can write to") from None
    for path in written:
        print(f"wrote {path}")
    if webhook_source(preset.output["webhook_config"]) == "inline":
        print("note: the inline webhook_config was left out (webhook URLs are secrets): put it in a JSON file "
              "and set webhook_config to that file's path to export a reference to it")
    relative = relative_paths(preset)
    if relative:
        print(f"note: {', '.join(relative)} are relative: run SimpleTuner from {preset.base_dir}")
    return 0
