"""Pure AT Protocol formats for a labeler: labels, signatures, DAG-CBOR, frames, XRPC errors.

Nothing in this package does I/O or imports the web, database or HTTP layers (a test checks it).
Functions take values: signing takes a key object, verification takes a public key someone else resolved.
"""
