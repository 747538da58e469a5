"""The one root of every error the core raises on purpose.

A `WorkbenchError` carries a message a user can act on; the app shows it as one line of plain
text, the CLI exits 2 with it. Anything else that escapes the core is a bug and stays loud.
"""


class WorkbenchError(ValueError):
    """A bad input or a request the workbench cannot honour, said in one line."""
