"""Alembic migrations of the SQL backend's tables, shipped in the package."""
