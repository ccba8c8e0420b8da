"""The app's screens: the wizard, the monitor, and their dialogs."""
