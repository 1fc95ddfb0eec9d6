"""Shipped sample lineups (TOML), modelled on the seed operators."""
