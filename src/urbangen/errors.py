"""The one exception type users see: a clear message naming the file or field and what was expected."""


class UrbangenError(Exception):
    """A user-facing error (bad input, bad config, missing file). The CLI prints it without a traceback."""
