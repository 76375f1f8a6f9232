"""Adapters that implement `prisme_core.ports` with real technologies, and their fakes."""
