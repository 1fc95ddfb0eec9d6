"""Initial subscriber store: catalog, accounts, subscriptions, payments and ledger, cards,
boxes, devices, verification sessions, notifications, the rights-change journal, EMM
sequence counters and the EMM outbox.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_number', sa.String(length=32), nullable=False),
    sa.Column('contract_number', sa.String(length=32), nullable=False),
    sa.Column('surname', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('patronymic', sa.String(length=128), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=256), nullable=True),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('credit_limit_minor', sa.BigInteger(), nullable=False),
    sa.Column('balance_minor', sa.BigInteger(), nullable=False),
    sa.Column('region', sa.Integer(), nullable=False),
    sa.Column('extra_screens', sa.Integer(), nullable=False),
    sa.Column('notify_email', sa.Boolean(), nullable=False),
    sa.Column('notify_sms', sa.Boolean(), nullable=False),
    sa.Column('created_at_s', sa.BigInteger(), nullable=False),
    sa.Column('suspended_from_s', sa.BigInteger(), nullable=True),
    sa.Column('suspended_until_s', sa.BigInteger(), nullable=True),
    sa.Column('blocked_since_s', sa.BigInteger(), nullable=True),
    sa.Column('block_cause', sa.String(length=32), nullable=True),
    sa.Column('last_switch_at_s', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('account_number', name=op.f('uq_accounts_account_number')),
    sa.UniqueConstraint('contract_number', name=op.f('uq_accounts_contract_number'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_phone'), ['phone'], unique=False)

    op.create_table('card_groups',
    sa.Column('shared_address', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('next_position', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('shared_address', name=op.f('pk_card_groups'))
    )
    op.create_table('channels',
    sa.Column('service_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('maturity_rating', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('service_id', name=op.f('pk_channels')),
    sa.UniqueConstraint('number', name=op.f('uq_channels_number'))
    )
    op.create_table('counters',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_counters'))
    )
    op.create_table('emm_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('card_serial', sa.BigInteger(), nullable=True),
    sa.Column('shared_address', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('created_at_s', sa.BigInteger(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('cause', sa.String(length=32), nullable=True),
    sa.Column('sent_at_s', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_emm_outbox'))
    )
    with op.batch_alter_table('emm_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_emm_outbox_card_serial'), ['card_serial'], unique=False)
        batch_op.create_index('ix_emm_outbox_status_id', ['status', 'id'], unique=False)

    op.create_table('emm_sequences',
    sa.Column('address_kind', sa.String(length=8), nullable=False),
    sa.Column('address', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('next_seq', sa.BigInteger(), nullable=False),
    sa.Column('sent_rights_version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('address_kind', 'address', name=op.f('pk_emm_sequences'))
    )
    op.create_table('packages',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('price_minor', sa.BigInteger(), nullable=False),
    sa.Column('period_days', sa.Integer(), nullable=False),
    sa.Column('max_screens', sa.Integer(), nullable=True),
    sa.Column('retired', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_packages')),
    sa.UniqueConstraint('code', name=op.f('uq_packages_code'))
    )
    op.create_table('rights_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('card_serial', sa.BigInteger(), nullable=False),
    sa.Column('at_s', sa.BigInteger(), nullable=False),
    sa.Column('cause', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rights_changes'))
    )
    with op.batch_alter_table('rights_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rights_changes_card_serial'), ['card_serial'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )
    op.create_table('boxes',
    sa.Column('chip_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('vendor', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('firmware_version', sa.String(length=32), nullable=False),
    sa.Column('manufactured', sa.String(length=32), nullable=False),
    sa.Column('wrapped_csk', sa.LargeBinary(), nullable=True),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('imported_at_s', sa.BigInteger(), nullable=False),
    sa.Column('batch', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_boxes_account_id_accounts')),
    sa.PrimaryKeyConstraint('chip_id', name=op.f('pk_boxes'))
    )
    with op.batch_alter_table('boxes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_boxes_account_id'), ['account_id'], unique=False)

    op.create_table('channel_regions',
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('region', sa.Integer(), autoincrement=False, nullable=False),
    sa.ForeignKeyConstraint(['service_id'], ['channels.service_id'], name=op.f('fk_channel_regions_service_id_channels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('service_id', 'region', name=op.f('pk_channel_regions'))
    )
    op.create_table('devices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.Column('logged_in_at_s', sa.BigInteger(), nullable=False),
    sa.Column('logged_out_at_s', sa.BigInteger(), nullable=True),
    sa.Column('logout_reason', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_devices_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_devices')),
    sa.UniqueConstraint('account_id', 'device_id', name=op.f('uq_devices_account_id'))
    )
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devices_account_id'), ['account_id'], unique=False)

    op.create_table('ledger_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at_s', sa.BigInteger(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('balance_after_minor', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=True),
    sa.Column('description', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_ledger_entries_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries'))
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_account_id_id', ['account_id', 'id'], unique=False)

    op.create_table('notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at_s', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('text', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_notifications_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notifications'))
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notifications_account_id'), ['account_id'], unique=False)

    op.create_table('package_channels',
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], name=op.f('fk_package_channels_package_id_packages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_id'], ['channels.service_id'], name=op.f('fk_package_channels_service_id_channels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('package_id', 'service_id', name=op.f('pk_package_channels'))
    )
    op.create_table('package_price_tiers',
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('from_period', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('price_minor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], name=op.f('fk_package_price_tiers_package_id_packages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('package_id', 'from_period', name=op.f('pk_package_price_tiers'))
    )
    op.create_table('payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('payment_id', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at_s', sa.BigInteger(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('by_kind', sa.String(length=8), nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('package_code', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_payments_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_payments_payment_id'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_account_id'), ['account_id'], unique=False)

    op.create_table('promised_payments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('granted_at_s', sa.BigInteger(), nullable=False),
    sa.Column('due_at_s', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('settled_at_s', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_promised_payments_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promised_payments'))
    )
    with op.batch_alter_table('promised_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promised_payments_account_id'), ['account_id'], unique=False)

    op.create_table('promo_codes',
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('max_uses', sa.Integer(), nullable=True),
    sa.Column('used_count', sa.Integer(), nullable=False),
    sa.Column('valid_until_s', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], name=op.f('fk_promo_codes_package_id_packages')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_promo_codes'))
    )
    op.create_table('subscriptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('package_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('auto_renew', sa.Boolean(), nullable=False),
    sa.Column('start_s', sa.BigInteger(), nullable=True),
    sa.Column('paid_until_s', sa.BigInteger(), nullable=True),
    sa.Column('period_start_s', sa.BigInteger(), nullable=True),
    sa.Column('period_price_minor', sa.BigInteger(), nullable=False),
    sa.Column('periods_billed', sa.Integer(), nullable=False),
    sa.Column('activated_at_s', sa.BigInteger(), nullable=True),
    sa.Column('created_at_s', sa.BigInteger(), nullable=False),
    sa.Column('closed_at_s', sa.BigInteger(), nullable=True),
    sa.Column('reminded_until_s', sa.BigInteger(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_subscriptions_account_id_accounts')),
    sa.ForeignKeyConstraint(['package_id'], ['packages.id'], name=op.f('fk_subscriptions_package_id_packages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions'))
    )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriptions_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_subscriptions_status_paid_until', ['status', 'paid_until_s'], unique=False)

    op.create_table('verification_sessions',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at_s', sa.BigInteger(), nullable=False),
    sa.Column('expires_at_s', sa.BigInteger(), nullable=False),
    sa.Column('verified_at_s', sa.BigInteger(), nullable=True),
    sa.Column('ended_at_s', sa.BigInteger(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_verification_sessions_account_id_accounts')),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_verification_sessions'))
    )
    with op.batch_alter_table('verification_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_verification_sessions_account_id'), ['account_id'], unique=False)

    op.create_table('cards',
    sa.Column('serial', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('shared_address', sa.Integer(), nullable=False),
    sa.Column('member_position', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('region', sa.Integer(), nullable=False),
    sa.Column('maturity_limit', sa.Integer(), nullable=False),
    sa.Column('paired_chip_id', sa.BigInteger(), nullable=True),
    sa.Column('registered_at_s', sa.BigInteger(), nullable=False),
    sa.Column('rights_version', sa.BigInteger(), nullable=False),
    sa.Column('rights_changed_at_s', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_cards_account_id_accounts')),
    sa.ForeignKeyConstraint(['paired_chip_id'], ['boxes.chip_id'], name=op.f('fk_cards_paired_chip_id_boxes')),
    sa.PrimaryKeyConstraint('serial', name=op.f('pk_cards')),
    sa.UniqueConstraint('paired_chip_id', name=op.f('uq_cards_paired_chip_id')),
    sa.UniqueConstraint('shared_address', 'member_position', name=op.f('uq_cards_shared_address'))
    )
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cards_account_id'), ['account_id'], unique=False)

    op.create_table('promo_redemptions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at_s', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_promo_redemptions_account_id_accounts')),
    sa.ForeignKeyConstraint(['code'], ['promo_codes.code'], name=op.f('fk_promo_redemptions_code_promo_codes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promo_redemptions')),
    sa.UniqueConstraint('code', 'account_id', name=op.f('uq_promo_redemptions_code'))
    )


def downgrade() -> None:
    op.drop_table('promo_redemptions')
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cards_account_id'))

    op.drop_table('cards')
    with op.batch_alter_table('verification_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_verification_sessions_account_id'))

    op.drop_table('verification_sessions')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.drop_index('ix_subscriptions_status_paid_until')
        batch_op.drop_index(batch_op.f('ix_subscriptions_account_id'))

    op.drop_table('subscriptions')
    op.drop_table('promo_codes')
    with op.batch_alter_table('promised_payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promised_payments_account_id'))

    op.drop_table('promised_payments')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_account_id'))

    op.drop_table('payments')
    op.drop_table('package_price_tiers')
    op.drop_table('package_channels')
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_account_id'))

    op.drop_table('notifications')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_account_id_id')

    op.drop_table('ledger_entries')
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devices_account_id'))

    op.drop_table('devices')
    op.drop_table('channel_regions')
    with op.batch_alter_table('boxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_boxes_account_id'))

    op.drop_table('boxes')
    op.drop_table('settings')
    with op.batch_alter_table('rights_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rights_changes_card_serial'))

    op.drop_table('rights_changes')
    op.drop_table('packages')
    op.drop_table('emm_sequences')
    with op.batch_alter_table('emm_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_emm_outbox_status_id')
        batch_op.drop_index(batch_op.f('ix_emm_outbox_card_serial'))

    op.drop_table('emm_outbox')
    op.drop_table('counters')
    op.drop_table('channels')
    op.drop_table('card_groups')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_phone'))

    op.drop_table('accounts')
