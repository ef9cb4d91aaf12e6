"""Misbehaving dlm plugins, one per module (see pyproject.toml's entry points)."""
