"""Subscriber management: operator profiles, the catalog, the seed operators' rules (DESIGN §6),
the simulation clock and the entitlement state per card.

Domain entry points: :mod:`cas.billing.service` (money and packages),
:mod:`cas.billing.accounts` (accounts, cards, boxes, devices, verification),
:mod:`cas.billing.clock`, :mod:`cas.billing.state`, :mod:`cas.billing.setup`.
"""
