"""atproto-hma-labeler: an AT Protocol labeler for known-harmful images.

Import names from the module that owns them (`labeler.protocol.label`, `labeler.store.engine`, …);
this package root deliberately re-exports nothing.
"""

__version__ = "0.1.0"
