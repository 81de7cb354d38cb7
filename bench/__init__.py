"""Helpers for tests, benchmarks and local runs: redis-server and a fake Viber."""
