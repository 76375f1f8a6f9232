"""The ``prisme`` command: starts the core, the HTTP façade and, if needed, the embedded store.

This is the one package that imports both `prisme_core` and `prisme_http`.
"""
