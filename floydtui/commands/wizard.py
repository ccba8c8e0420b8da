"""`floydtui [PRESET]`: the wizard; with PRESET, opens it for editing (a new path starts a new preset)."""

from __future__ import annotations


def main(args) -> int:
    from floydtui.tui.app import create_app

    create_app(preset=args.preset).run()
    return 0
