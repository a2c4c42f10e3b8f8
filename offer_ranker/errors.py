"""Errors a user can act on. The CLI prints their message, without a traceback."""


class OfferRankerError(Exception):
    """Base class: the message says what was wrong and where (file, row, field or setting)."""
