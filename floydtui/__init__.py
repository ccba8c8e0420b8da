"""floydtui: fine-tune DeepFloyd IF with LoRA from the terminal."""

__version__ = "0.1.0"
