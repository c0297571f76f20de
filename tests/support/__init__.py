"""Shared test helpers: a real-uvicorn server runner, a fake PLC directory, a service-JWT minter."""
