"""HTTP and WebSocket surface: XRPC routes, error rendering, input limits. Signing internals live elsewhere."""
