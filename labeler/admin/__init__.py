"""The operator/moderator API: authenticated endpoints that act on labels (and the CLI commands behind them)."""
