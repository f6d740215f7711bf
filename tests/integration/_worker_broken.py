"""Raises on import: the worker must report it as one line."""

raise RuntimeError("this module is broken on purpose")
