"""The one place the app catches core errors: a `WorkbenchError` becomes a message.

Anything else (a torch failure, a bug) is not caught here and stays loud.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st

from ui.text import plain
from workbench import WorkbenchError


@dataclass
class Outcome:
    """Whether the guarded block failed (its message is already on the page)."""

    failed: bool = False


@contextmanager
def guard(what: str) -> Iterator[Outcome]:
    """Show a core error raised in the block as "`what`: message", in plain text.

    Usage: ``with guard("Cannot draw the curve") as outcome: ...``; then ``if outcome.failed:``.
    """
    outcome = Outcome()
    try:
        yield outcome
    except WorkbenchError as error:
        outcome.failed = True
        st.error(plain(f"{what}: {error}"), icon=":material/error:")
