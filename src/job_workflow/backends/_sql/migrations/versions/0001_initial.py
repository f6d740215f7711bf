"""The first schema: every table of the SQL backend.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import MetaData

from job_workflow.backends._sql.schema import build_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _metadata() -> MetaData:
    return build_tables(context.config.attributes["table_prefix"]).metadata


def upgrade() -> None:
    # checkfirst: a database made by create_schema() before it used
    # migrations is adopted, not failed.
    _metadata().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    _metadata().drop_all(op.get_bind(), checkfirst=True)
