"""The image pipeline: sources → durable jobs → fetch → hash → match → policy → label writer or review queue.

Knows nothing of HTTP routing; the XRPC/upload routes call into it.
"""
