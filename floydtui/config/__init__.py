"""Presets, flavours, validation sizes and SimpleTuner interop. Never imports torch or textual."""

from floydtui.config.flavours import FLAVOURS, Flavour
from floydtui.config.preset import Preset, load_preset, parse_set_value, preset_from_dict
from floydtui.config.resolution import describe_sizes, parse_validation_resolution

__all__ = ["FLAVOURS", "Flavour", "Preset", "describe_sizes", "load_preset",
           "parse_set_value", "parse_validation_resolution", "preset_from_dict"]
