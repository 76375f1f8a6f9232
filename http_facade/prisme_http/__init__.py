"""The HTTP façade: Prisme's documented HTTP events API, transcoded onto the gRPC core.

It imports the generated stubs and `prisme_client`, never `prisme_core`.
"""
