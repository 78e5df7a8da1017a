"""The one exception type that means "the user's input is wrong" (exit code 2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class UserInputError(Exception):
    """Bad input: a wrong parameter, an unreadable or foreign file, an existing output,
    a full disk. The message is one self-contained paragraph meant for the user; the CLI
    prints it without a traceback and exits with status 2."""


def path_error(exc: BaseException) -> UserInputError | None:
    """The :class:`UserInputError` for an ``OSError`` that only a bad path given by the
    user causes (a name too long for the file system, a loop of symbolic links), raised by
    any ``open``, ``stat`` or ``exists`` on the way; None for any other exception."""
    import errno

    if isinstance(exc, RuntimeError) and str(exc).startswith(_RESOLVE_LOOP):
        # Path.resolve() of Python < 3.13 raises this instead of ELOOP
        where = str(exc)[len(_RESOLVE_LOOP):].strip("'")
        exc = OSError(errno.ELOOP, "Too many levels of symbolic links", where)
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENAMETOOLONG, errno.ELOOP):
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENAMETOOLONG:
        return UserInputError(f"A path is too long for the file system{where}: a file or "
                              "folder name may have at most 255 bytes (and simcore adds a "
                              "suffix such as .part to an output's name). Use a shorter name.")
    return UserInputError(f"A path leads into a loop of symbolic links{where}; give another "
                          "path.")


_RESOLVE_LOOP = "Symlink loop from "


@contextmanager
def bad_paths_are_user_errors() -> Iterator[None]:
    """Context manager, also a decorator (``@bad_paths_are_user_errors()``): an error that
    only a bad path causes leaves as the :class:`UserInputError` of :func:`path_error`;
    any other exception passes unchanged. The command line runs every command in it, and
    the public functions that take a path are decorated with it for Python callers."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        error = path_error(exc)
        if error is None:
            raise
        raise error from None


class InvalidValueError(UserInputError, ValueError):
    """A bad value given to a public function (an analysis option, an array of the wrong
    shape): a ``ValueError`` for Python callers and, on the command line, a one-paragraph
    exit-2 error like any :class:`UserInputError`. Plain ``ValueError``s stay what they
    are (a bug), so ``simcore analyze`` does not dress a defect up as the user's mistake."""


class UnstableRunError(UserInputError):
    """The integration of a run became unstable (non-finite or runaway state).

    Raised by a model's ``advance``: the message is one paragraph that names the step
    range of the failing chunk and gives advice fitting the run's parameters (e.g. a
    smaller time step derived from the force scale). It is a :class:`UserInputError`
    (exit status 2): the parameters, not simcore, are at fault. The driver may add where
    the last good frames are. ``first_step`` and ``last_step`` bound the failing chunk
    (the state was finite at ``first_step`` and is not at ``last_step``), when known.
    """

    def __init__(self, message: str, *, first_step: int | None = None,
                 last_step: int | None = None):
        super().__init__(message)
        self.first_step = first_step
        self.last_step = last_step
