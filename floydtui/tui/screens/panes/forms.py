"""Steps 3 and 4: the training settings and the validation settings, as forms."""

from __future__ import annotations

from typing import Iterable

from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from floydtui.config.resolution import describe_sizes, parse_validation_resolution
from floydtui.config.schema import TIMESTEP_BIAS_KEYS
from floydtui.errors import FloydError
from floydtui.tui.screens.panes.base import PresetChanged, WizardPane

TRAINING_GROUPS = (
    ("Model", ("pretrained_model_name_or_path", "model_type")),
    ("Adapter", ("lora_rank", "lora_alpha", "use_dora", "use_bitfit")),
    ("Learning rate", ("learning_rate", "lr_end", "lr_scheduler", "lr_warmup_steps")),
    ("Length", ("train_batch_size", "gradient_accumulation_steps", "max_train_steps", "num_train_epochs")),
    ("Precision and memory", ("mixed_precision", "optimizer", "attention_mechanism", "gradient_checkpointing",
                              "resolution")),
    ("Timestep bias (SimpleTuner's; docs/train.md)", ("timestep_bias_strategy", "timestep_bias_multiplier",
                                                      "timestep_bias_portion", "timestep_bias_begin",
                                                      "timestep_bias_end")),
    ("Reproducibility and saving", ("seed", "checkpointing_steps", "checkpoints_total_limit", "output_dir")),
    ("Reporting (docs/reporting.md; webhook_config in the preset file)",
     ("report_to", "tracker_project_name", "tracker_run_name")),
)

VALIDATION_KEYS = ("validation_resolution", "validation_prompt", "validation_negative_prompt", "validation_steps",
                   "validation_num_inference_steps", "validation_guidance", "validation_seed", "num_validation_images",
                   "num_eval_images")


class TrainingPane(WizardPane):
    """LoRA rank and alpha, DoRA, BitFit, learning rates, length, precision, attention, timestep bias, saving."""

    KEYS = tuple(k for _, keys in TRAINING_GROUPS for k in keys)

    def build(self) -> Iterable[Widget]:
        rows: list[Widget] = []
        for title, keys in TRAINING_GROUPS:
            rows.append(Static(title, classes="form-group"))
            rows.extend(self.table_editor(k) for k in keys)
        rows.append(Static(id="xformers-note", classes="form-note"))
        yield VerticalScroll(*rows, id="training-form")

    @property
    def xformers_note(self) -> Static:
        return self.query_one("#xformers-note", Static)

    def state_changed(self) -> None:
        self.refresh_editors()
        read = TIMESTEP_BIAS_KEYS[self.state.resolved("training", "timestep_bias_strategy")]
        # a key shows when the strategy reads it (as in SimpleTuner's own form) or when it has a problem
        for key in {k for keys in TIMESTEP_BIAS_KEYS.values() for k in keys}:
            self.field_editor(key).display = key in read or bool(self.state.problems_for(key, None))
        note = self.xformers_note
        xformers = self.wizard.xformers
        chosen = self.state.resolved("training", "attention_mechanism") == "xformers"
        if chosen and xformers is not None and not xformers[0]:
            note.update(f"attention_mechanism = xformers will not work here: {xformers[1]}")
            note.add_class("-warning")
        else:
            note.update("Steps or epochs: max_train_steps > 0 wins; set it to 0 to train num_train_epochs.")
            note.remove_class("-warning")


class ValidationPane(WizardPane):
    """Validation sizes with a live parse, prompts, interval; stage II's num_eval_images."""

    KEYS = (*VALIDATION_KEYS, "validation_prompts")

    def build(self) -> Iterable[Widget]:
        rows: list[Widget] = []
        for key in VALIDATION_KEYS:
            rows.append(self.table_editor(key))
            if key == "validation_resolution":
                rows.append(Static(id="resolution-parse", classes="form-note"))
        rows.append(Static("More prompts (validation_prompts), one a line:", classes="form-group"))
        from textual.widgets import TextArea  # only this pane uses it: keeps the first screen's imports small

        prompts = self.state.get("validation", "validation_prompts") or []
        rows.append(TextArea("\n".join(prompts), id="more-prompts", soft_wrap=True, show_line_numbers=False))
        yield VerticalScroll(*rows, id="validation-form")

    @property
    def resolution_parse(self) -> Static:
        return self.query_one("#resolution-parse", Static)

    def state_changed(self) -> None:
        self.refresh_editors()
        parse = self.resolution_parse
        value = self.state.resolved("validation", "validation_resolution")
        seeds = self.state.resolved("validation", "num_validation_images")
        try:
            parse.update("→ " + describe_sizes(parse_validation_resolution(value),
                                               seeds if isinstance(seeds, int) and seeds > 0 else 1))
            parse.remove_class("-error")
        except FloydError as e:
            parse.update("→ " + "; ".join(p.message for p in e.problems))
            parse.add_class("-error")
        stage2 = self.state.stage == 2
        self.field_editor("num_eval_images").display = stage2

    def on_text_area_changed(self, event) -> None:
        event.stop()
        lines = [line.strip() for line in event.text_area.text.splitlines() if line.strip()]
        if lines != (self.state.get("validation", "validation_prompts") or []):
            self.state.set("validation", "validation_prompts", lines or None)
            self.post_message(PresetChanged(self))
