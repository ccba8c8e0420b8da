"""The training engine: tiny models, embed cache, trainer, validation, checkpoints."""
