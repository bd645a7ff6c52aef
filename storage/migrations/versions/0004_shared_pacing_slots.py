"""shared pacing slots

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 08:35:35.509566
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('pacing_slots',
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('next_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )



def downgrade() -> None:

    op.drop_table('pacing_slots')

