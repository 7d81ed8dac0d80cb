"""The one exception type that means "the user's input is wrong".

The CLI prints its message on one line (no traceback) and exits with code 2. Raise it
*before* touching anything on disk, so that bad input never loses data.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Optional, Sequence


class UserError(Exception):
    """Bad input: message says what is wrong and how to fix it."""

    def __init__(self, *problems: str) -> None:
        self.problems = [p for p in problems if p]
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        if len(self.problems) <= 1:
            return self.problems[0] if self.problems else "invalid input"
        return f"{len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems)


class RunFolderError(Exception):
    """A run folder that cannot be resumed exactly (its files disagree with its checkpoint,
    or the data changed since it started). Not bad input: the run is recorded as failed
    and the matrix goes on. The message is one line ending with the command that restarts
    the run from scratch (see :func:`benchmarks.run_files.restart_hint`)."""


def cli_exit(main: Callable[[Optional[Sequence[str]]], Any],
             argv: Optional[Sequence[str]] = None) -> int:
    """Run a command-line ``main(argv)``: 0 on success; bad input prints one ``error:``
    line on stderr and gives 2 (the exit-code contract every command of the suite keeps)."""
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
