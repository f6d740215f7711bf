"""Alembic environment: migrate one table prefix on a connection we are given.

``SqlBackend.upgrade_schema`` passes the connection and the table prefix in
``config.attributes``; the version table is ``<prefix>alembic_version`` so
several prefixes in one database migrate independently.
"""

from __future__ import annotations

from alembic import context

from job_workflow.backends._sql.schema import build_tables

config = context.config
prefix: str = config.attributes["table_prefix"]
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    target_metadata=build_tables(prefix).metadata,
    version_table=f"{prefix}alembic_version",
)

with context.begin_transaction():
    context.run_migrations()
