"""images.name: the file's name as uploaded (shown), beside `filename`, its safe form on disk

Revision ID: 0003_images_name
Revises: 0002_jobs_lease
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_images_name"
down_revision = "0002_jobs_lease"  # chained after the lease column (both were written at once)
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: the images uploaded before have none, and are shown by their `filename`
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("name", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("name")
