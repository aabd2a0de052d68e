"""The root of every error cloudops raises on purpose.

Each error says what failed and what to do about it, and never carries a secret.
Its ``kind`` tells the CLI which documented exit code to use (cli/exit_codes.py):

    CloudopsError
     ├── kind "input"   -> exit 2: the user's input is wrong (reference, file, credentials)
     ├── kind "failed"  -> exit 1: the operation was attempted and did not complete
     └── kind "refused" -> exit 3: a guard rail refused it (wrong account, tag move, ...)

Layers define their own subclasses (refs.ReferenceError, registry.errors.RegistryError, ...).
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["input", "failed", "refused"]


class CloudopsError(Exception):
    """An error with a message fit for a user: what failed, and the fix."""

    kind: ErrorKind = "failed"

    def __init__(self, message: str, *, hint: str | None = None, kind: ErrorKind | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if kind is not None:
            self.kind = kind

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class InputError(CloudopsError):
    """The user's input is wrong: fix it and run again."""

    kind: ErrorKind = "input"


class RefusedError(CloudopsError):
    """A guard rail refused the operation; nothing was written."""

    kind: ErrorKind = "refused"
