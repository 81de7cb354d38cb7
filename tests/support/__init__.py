"""Helpers the tests share that are not fixtures: throwaway servers in front of the stack."""
