"""Devices and the memory estimator. Never imports textual."""
