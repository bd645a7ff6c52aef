"""labelled examples: shoppers' messages a person's correction labelled, awaiting review

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'labelled_examples',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('label', sa.String(length=64), nullable=False),
        sa.Column('alternatives', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('cause', sa.String(length=16), nullable=False),
        sa.Column('change', sa.JSON(), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('conversation_id', sa.Integer(), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reviewed_by', sa.String(length=200), nullable=True),
        sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id']),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('labelled_examples', schema=None) as batch_op:
        batch_op.create_index('ix_labelled_examples_status', ['status', 'id'], unique=False)
        batch_op.create_index(
            'ix_labelled_examples_conversation_id', ['conversation_id'], unique=False
        )
        batch_op.create_index('ix_labelled_examples_message_id', ['message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('labelled_examples', schema=None) as batch_op:
        batch_op.drop_index('ix_labelled_examples_message_id')
        batch_op.drop_index('ix_labelled_examples_conversation_id')
        batch_op.drop_index('ix_labelled_examples_status')
    op.drop_table('labelled_examples')
