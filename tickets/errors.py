"""The one exception type the CLI turns into a one-line message and exit code 2."""


class TicketsError(Exception):
    """A problem with the user's input or environment that the user can fix.

    The message is shown as one line; it should name the problem and the fix.
    """
