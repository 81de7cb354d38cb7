"""Test doubles, launchers and conversation helpers shared by the tests, benchmarks and local stack."""
