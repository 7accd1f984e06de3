"""The one error type users see: a message naming the problem and the valid choices."""


class FeatvisError(ValueError):
    """Bad input (unknown layer, index out of range, unreadable file, ...).

    The CLI prints these as one message instead of a traceback.
    """
