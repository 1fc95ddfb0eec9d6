"""Shipped operator profiles (TOML), one per seed operator (DESIGN §6)."""
