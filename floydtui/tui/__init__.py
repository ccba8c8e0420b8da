"""The Textual app: the wizard (`floydtui [PRESET]`) and the monitor (`floydtui watch RUN_DIR`).

Only this package imports Textual; `create_app` in `app.py` builds the app for the
commands, the tests and the screenshot script alike.
"""
