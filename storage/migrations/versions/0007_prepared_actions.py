"""prepared actions: writes to the store a rule prepared and a person approves or denies

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

def upgrade() -> None:
    op.create_table(
        'prepared_actions',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('conversation_id', sa.Integer(), sa.ForeignKey('conversations.id'), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('decided_by', sa.String(length=200), nullable=True),
        sa.Column('decided_via', sa.String(length=32), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('conversation_id', 'seq', name='uq_prepared_conv_seq'),
    )
    op.create_index('ix_prepared_state', 'prepared_actions', ['state'])

def downgrade() -> None:
    op.drop_index('ix_prepared_state', table_name='prepared_actions')
    op.drop_table('prepared_actions')
