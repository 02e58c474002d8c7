"""Project exceptions. The CLI turns an InputError into one line on stderr and exit code 2."""


class InputError(ValueError):
    """A user-supplied value, file or option is invalid; the message names it and the fix."""
