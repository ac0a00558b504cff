"""Errors meant for the user: the command line prints their message alone, without a traceback."""


class AgegenderError(Exception):
    """Something the user can fix: missing data, a bad parameter, a mismatched split."""


class DataError(AgegenderError):
    """The dataset is missing, unreadable or does not match the committed split."""
