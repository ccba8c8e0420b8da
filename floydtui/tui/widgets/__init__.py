"""Reusable widgets of the wizard and the monitor."""
