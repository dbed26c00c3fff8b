"""Errors that users see. Each names the file, the record and the field where it can."""

from __future__ import annotations

from dataclasses import dataclass


class VLGuardError(Exception):
    """Base class for user-facing errors: the CLI prints the message, never a traceback."""


@dataclass(frozen=True)
class Problem:
    """One problem in an input file: where it is and what is wrong."""

    file: str
    record: str  # record id, or "#<index>" when the record has no usable id
    field: str  # the offending field ("" for the whole record or file)
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: record {self.record}" if self.record else self.file
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class DataValidationError(VLGuardError):
    """A data file has one or more invalid records; all problems are listed."""

    def __init__(self, problems: list[Problem], hint: str = "") -> None:
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) found:"] + [f"  - {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class ImageLoadError(VLGuardError):
    """An image is missing, truncated, not an image, or too large to decode safely."""


class ConfigError(VLGuardError):
    """A configuration is invalid: unknown key, wrong type, inconsistent settings."""


class RunMismatchError(VLGuardError):
    """A run folder already holds results made with other settings."""
