"""Benchmarks (`make bench`, `make bench-memory`, `make bench-distant`) and `make run`'s local stack."""
