"""User-facing errors: the CLI prints their message (never a traceback) and exits non-zero."""

from __future__ import annotations


class SemlocError(Exception):
    """An error caused by the user's input or environment, with a message that says what to fix."""


class ConfigError(SemlocError):
    """A config file or override is malformed, unknown, or of the wrong type."""


class DataError(SemlocError):
    """Input posts are malformed. ``problems`` lists every bad row, not only the first."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            shown = self.problems[:50]
            more = len(self.problems) - len(shown)
            message = message + "\n" + "\n".join(f"  - {p}" for p in shown)
            if more > 0:
                message += f"\n  ... and {more} more"
        super().__init__(message)


class StoreMismatchError(SemlocError):
    """A feature store's manifest does not match what a run needs."""
