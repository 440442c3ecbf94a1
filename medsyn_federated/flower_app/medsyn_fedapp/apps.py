"""Flower's entry points (``serverapp``/``clientapp`` in pyproject.toml): MedSyn's apps, imported."""

from medsyn_federated.apps import client_app, server_app

__all__ = ["client_app", "server_app"]
