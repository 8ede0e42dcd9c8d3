"""One error hierarchy with titles users see (harlequin's exception.py)."""

from __future__ import annotations


class QwentuiError(Exception):
    """Base error: `message` is one readable line; `exit_code` is what the CLI returns."""

    exit_code = 1
    title = "Error"

    def __init__(self, message: str, title: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title:
            self.title = title
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(QwentuiError):
    """Bad input from the user (flags, files, values): exit 2."""

    exit_code = 2
    title = "Bad input"


class ConfigError(UsageError):
    """The config file or an override is invalid."""

    title = "Config error"
