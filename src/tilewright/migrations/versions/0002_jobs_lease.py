"""jobs: the owner's lease

Revision ID: 0002_jobs_lease
Revises: 0001
Create Date: 2025-06-01

A running job's owner renews `lease_expires_at` with every heartbeat; a job whose lease has
run out belongs to a dead (or cut-off) owner and is taken over, whichever host looks.
Rows written before this revision have no lease: their heartbeat stands in for it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_jobs_lease"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_expires_at")
