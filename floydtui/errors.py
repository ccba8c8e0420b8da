"""Problems a user can cause, as values: what, where, how to fix; and the sections of a check.

The command line prints them and exits 2 (or 1 for `check`); the TUI shows the same
objects inline next to the field they name. The bottom layer: it imports nothing of floydtui,
so every layer can return these values. Nothing here imports heavy libraries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) with a preset, a dataset or a flag."""

    message: str
    where: str = ""
    hint: str = ""
    severity: str = "error"  # "error" | "warning" | "note" (information, e.g. what import expanded)
    key: str = ""  # the preset key it concerns, for the TUI to put it next to its field

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def format(self) -> str:
        head = f"{self.severity}: "
        if self.where:
            head += f"{self.where}: "
        text = head + self.message
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "where": self.where,
            "key": self.key,
            "message": self.message,
            "hint": self.hint,
        }

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.format()


@dataclass
class FloydError(Exception):
    """Raised with one or more problems; the CLI prints them, the TUI shows them."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.format())

    @classmethod
    def one(cls, message: str, where: str = "", hint: str = "", key: str = "") -> "FloydError":
        return cls([Problem(message, where=where, hint=hint, key=key)])

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def format(self) -> str:
        return "\n".join(p.format() for p in self.problems)

    def __str__(self) -> str:
        return self.format()


@dataclass
class CheckSection:
    """One section of `floydtui check` (preset, datasets, memory, download and disk), computed by the
    layer that owns it: a human summary, its problems and the same facts as data (for --json and the TUI)."""

    title: str
    lines: list[str] = field(default_factory=list)  # a human summary
    problems: list[Problem] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # for --json

    @property
    def ok(self) -> bool:
        return not any(p.is_error for p in self.problems)
