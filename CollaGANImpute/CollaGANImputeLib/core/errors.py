"""Errors the user can act on. Every entry point shows their message as it is."""

from __future__ import annotations

# Exit codes of the engine's commands, read back by whoever runs them in a background process.
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


class InputError(ValueError):
    """Bad input: the message names the file or contrast and the problem."""


class ModelError(ValueError):
    """A weights file or model card that cannot be used (corrupt, tampered, wrong contrasts)."""


class Cancelled(RuntimeError):
    """The user cancelled long work; nothing half-made was left behind."""
