"""The SQL backend: the queue port on SQLite, PostgreSQL and MySQL/MariaDB.

Tables after Rails' Solid Queue, claims with ``FOR UPDATE SKIP LOCKED``
where the database has it, SQLAlchemy 2 Core underneath. The implementation
lives in the private package ``job_workflow.backends._sql``.
"""

from job_workflow.backends._sql.backend import SqlBackend as SqlBackend
from job_workflow.backends._sql.database import (
    DatabaseUnavailableError as DatabaseUnavailableError,
)
from job_workflow.backends._sql.database import (
    SchemaMissingError as SchemaMissingError,
)

__all__ = ["DatabaseUnavailableError", "SchemaMissingError", "SqlBackend"]
