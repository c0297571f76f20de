"""Storage: SQLAlchemy Core tables and queries over SQLite (WAL, embedded default) or PostgreSQL (scale-out).

SQLAlchemy and driver exceptions do not leave this package raw: callers catch `StoreError`.
"""
