"""state events by new state and time: the honest wait's recent claims without a full scan

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 08:40:00
"""
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("state_events", schema=None) as batch_op:
        batch_op.create_index("ix_state_events_new_at", ["new", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("state_events", schema=None) as batch_op:
        batch_op.drop_index("ix_state_events_new_at")
