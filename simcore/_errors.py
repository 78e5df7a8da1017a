"""The one exception type that means "the user's input is wrong" (exit code 2)."""

from __future__ import annotations


class UserInputError(Exception):
    """Bad input: a wrong parameter, an unreadable or foreign file, an existing output,
    a full disk. The message is one self-contained paragraph meant for the user; the CLI
    prints it without a traceback and exits with status 2."""


class UnstableRunError(UserInputError):
    """The integration blew up (non-finite or runaway values): the parameters (usually the
    time step) do not fit the forces. Raised by a model's ``advance``; the message gives
    advice that fits the parameters."""
