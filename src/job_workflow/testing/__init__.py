"""Helpers for testing workflows; the pytest plugin lives in ``.plugin``."""
