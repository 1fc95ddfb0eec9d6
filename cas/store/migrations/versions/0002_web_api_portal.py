"""Web layer: operator API keys, portal passwords and sessions, the audit log, idempotency
records and rate-limit counters (models in ``cas/web/models.py``).

Revision ID: 0002_web
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_web'
down_revision = '0001'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('web_api_keys',
    sa.Column('id', _ID, nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('operator', sa.String(length=32), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.Column('secret_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at_s', sa.BigInteger(), nullable=False),
    sa.Column('last_used_at_s', sa.BigInteger(), nullable=True),
    sa.Column('revoked_at_s', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_api_keys')),
    sa.UniqueConstraint('key_id', name=op.f('uq_web_api_keys_key_id'))
    )
    op.create_table('web_credentials',
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
              autoincrement=False, nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('updated_at_s', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                            name=op.f('fk_web_credentials_account_id_accounts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_web_credentials'))
    )
    op.create_table('web_sessions',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
              nullable=True),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('verification_token', sa.String(length=64), nullable=True),
    sa.Column('client_ip', sa.String(length=64), nullable=False),
    sa.Column('created_at_s', sa.BigInteger(), nullable=False),
    sa.Column('last_seen_at_s', sa.BigInteger(), nullable=False),
    sa.Column('expires_at_s', sa.BigInteger(), nullable=False),
    sa.Column('ended_at_s', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'],
                            name=op.f('fk_web_sessions_account_id_accounts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_sha256', name=op.f('pk_web_sessions'))
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sessions_account_id'), ['account_id'],
                              unique=False)

    op.create_table('web_audit_log',
    sa.Column('id', _ID, nullable=False),
    sa.Column('at_s', sa.BigInteger(), nullable=False),
    sa.Column('sim_at_s', sa.BigInteger(), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('client_ip', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=48), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_audit_log'))
    )
    with op.batch_alter_table('web_audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_web_audit_log_target', ['target'], unique=False)

    op.create_table('web_idempotency',
    sa.Column('api_key_id', sa.String(length=16), nullable=False),
    sa.Column('idem_key', sa.String(length=128), nullable=False),
    sa.Column('request_sha256', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response_body', sa.Text(), nullable=False),
    sa.Column('created_at_s', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('api_key_id', 'idem_key', name=op.f('pk_web_idempotency'))
    )
    op.create_table('web_throttle',
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('window_start_s', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_web_throttle'))
    )


def downgrade() -> None:
    op.drop_table('web_throttle')
    op.drop_table('web_idempotency')
    with op.batch_alter_table('web_audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_web_audit_log_target')
    op.drop_table('web_audit_log')
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_account_id'))
    op.drop_table('web_sessions')
    op.drop_table('web_credentials')
    op.drop_table('web_api_keys')
