"""`floydtui scan PRESET [--json]`: the pipeline's decision for every file of every dataset.

With --json, one JSON object a line per file (DESIGN.md section 5), every file of the
folder: images "ok" or "skipped", other files "not_image"; without, a summary per dataset. Dataset problems go to stderr. Exit 0, or 2 for an unreadable or invalid preset.
"""

from __future__ import annotations

import json
import sys

LIST_SKIPPED = 20  # the human summary names this many skipped files; --json has them all


def main(args) -> int:
    """Run the scan and print it."""
    from floydtui.cli import parse_sets
    from floydtui.config.preset import load_preset
    from floydtui.data.scan import scan_preset

    preset = load_preset(args.preset, overrides=parse_sets(args.set))
    scans = scan_preset(preset)
    out = sys.stdout
    for scan in scans:
        if args.json:
            for record in sorted(scan.records + scan.not_images, key=lambda r: r.rel):
                out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        else:
            out.write("\n".join(scan.summary_lines()) + "\n")
            skipped = [r for r in scan.records if not r.usable]
            for record in skipped[:LIST_SKIPPED]:
                out.write(f"    skipped {record.rel}: {record.reason} ({record.detail})\n")
            if len(skipped) > LIST_SKIPPED:
                out.write(f"    ... and {len(skipped) - LIST_SKIPPED} more (--json lists every file)\n")
            fallbacks = [r for r in scan.usable if "caption file" in r.note]
            for record in fallbacks[:LIST_SKIPPED]:
                out.write(f"    caption {record.rel}: {record.note}\n")
            if len(fallbacks) > LIST_SKIPPED:
                out.write(f"    ... and {len(fallbacks) - LIST_SKIPPED} more caption fallbacks\n")
        for problem in scan.problems:
            sys.stderr.write(problem.format() + "\n")
    return 0
