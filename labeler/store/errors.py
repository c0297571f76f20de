"""The store's one error type, in a module of its own so that code which only catches it (the CLI's error
handling) does not import SQLAlchemy to do so."""


class StoreError(Exception):
    """A database operation failed; the message is safe to show an operator."""
