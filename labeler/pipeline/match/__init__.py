"""Matching PDQ hashes against banks: one Matcher interface, HMA (remote) and embedded (in-memory) siblings."""
