"""Fault-injection tests: crashes and outages of the stack's parts while votes flow."""
