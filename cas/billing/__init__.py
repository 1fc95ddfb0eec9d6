"""Subscriber management: operator profiles, the catalog, the seed operators' rules (DESIGN §6),
the simulation clock and the entitlement state per card.

Domain entry points: :mod:`cas.billing.service` (money and packages: re-exports
:mod:`~cas.billing.payments`, :mod:`~cas.billing.packages`, :mod:`~cas.billing.holds`,
:mod:`~cas.billing.promo`, :mod:`~cas.billing.statement`, :mod:`~cas.billing.payers`),
:mod:`cas.billing.accounts` (accounts; re-exports cards, boxes, devices, verification),
:mod:`cas.billing.clock`, :mod:`cas.billing.state`, :mod:`cas.billing.setup`.  The fixed
vocabularies are in :mod:`cas.billing.vocab`; module map in docs/architecture.md.
"""
