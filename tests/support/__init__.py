"""Helpers shared by tests: real-process fixtures that are not pytest fixtures themselves."""
