"""Placeholder: see the issue tracker; this package grows in later issues."""
