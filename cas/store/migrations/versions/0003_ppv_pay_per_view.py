"""Pay-per-view: the event catalogue, pre-bookings, reported impulse purchases and the
newest accepted purchase report per card (models at the end of ``cas/store/models.py``).

Revision ID: 0003_ppv
Revises: 0002_web
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_ppv'
down_revision = '0002_web'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('ppv_events',
    sa.Column('event_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=128), nullable=False),
    sa.Column('start_s', sa.BigInteger(), nullable=False),
    sa.Column('end_s', sa.BigInteger(), nullable=False),
    sa.Column('price_tokens', sa.Integer(), nullable=False),
    sa.Column('impulse', sa.Boolean(), nullable=False),
    sa.Column('created_at_s', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_ppv_events'))
    )
    op.create_index(op.f('ix_ppv_events_service_id'), 'ppv_events', ['service_id'],
                    unique=False)
    op.create_table('ppv_bookings',
    sa.Column('id', _ID, nullable=False),
    sa.Column('card_serial', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', _ID, nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('booked_at_s', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                            name=op.f('fk_ppv_bookings_account_id_accounts')),
    sa.ForeignKeyConstraint(['event_id'], ['ppv_events.event_id'],
                            name=op.f('fk_ppv_bookings_event_id_ppv_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ppv_bookings')),
    sa.UniqueConstraint('card_serial', 'event_id', name=op.f('uq_ppv_bookings_card_serial'))
    )
    op.create_index(op.f('ix_ppv_bookings_account_id'), 'ppv_bookings', ['account_id'],
                    unique=False)
    op.create_index(op.f('ix_ppv_bookings_card_serial'), 'ppv_bookings', ['card_serial'],
                    unique=False)
    op.create_table('ppv_purchases',
    sa.Column('id', _ID, nullable=False),
    sa.Column('card_serial', sa.BigInteger(), nullable=False),
    sa.Column('purchase_seq', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', _ID, nullable=True),
    sa.Column('price_tokens', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('bought_s', sa.BigInteger(), nullable=False),
    sa.Column('report_counter', sa.BigInteger(), nullable=False),
    sa.Column('billed_at_s', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                            name=op.f('fk_ppv_purchases_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ppv_purchases')),
    sa.UniqueConstraint('card_serial', 'purchase_seq',
                        name=op.f('uq_ppv_purchases_card_serial'))
    )
    op.create_index(op.f('ix_ppv_purchases_account_id'), 'ppv_purchases', ['account_id'],
                    unique=False)
    op.create_index(op.f('ix_ppv_purchases_card_serial'), 'ppv_purchases', ['card_serial'],
                    unique=False)
    op.create_table('ppv_report_state',
    sa.Column('card_serial', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('last_report_counter', sa.BigInteger(), nullable=False),
    sa.Column('last_imported_at_s', sa.BigInteger(), nullable=False),
    sa.Column('purse_tokens', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('card_serial', name=op.f('pk_ppv_report_state'))
    )


def downgrade() -> None:
    op.drop_table('ppv_report_state')
    op.drop_index(op.f('ix_ppv_purchases_card_serial'), table_name='ppv_purchases')
    op.drop_index(op.f('ix_ppv_purchases_account_id'), table_name='ppv_purchases')
    op.drop_table('ppv_purchases')
    op.drop_index(op.f('ix_ppv_bookings_card_serial'), table_name='ppv_bookings')
    op.drop_index(op.f('ix_ppv_bookings_account_id'), table_name='ppv_bookings')
    op.drop_table('ppv_bookings')
    op.drop_index(op.f('ix_ppv_events_service_id'), table_name='ppv_events')
    op.drop_table('ppv_events')
