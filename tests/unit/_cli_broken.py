"""A module that fails while importing, for the CLI's error-line test."""

raise RuntimeError("this module is broken on purpose")
