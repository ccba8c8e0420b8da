"""`floydtui export PRESET -o DIR`: a preset to SimpleTuner's config.json + multidatabackend.json."""

from __future__ import annotations


def main(args) -> int:
    from floydtui.config.preset import load_preset
    from floydtui.config.simpletuner import export_simpletuner, relative_paths

    preset = load_preset(args.preset)
    for path in export_simpletuner(preset, args.output):
        print(f"wrote {path}")
    relative = relative_paths(preset)
    if relative:
        print(f"note: {', '.join(relative)} are relative: run SimpleTuner from {preset.base_dir}")
    return 0
