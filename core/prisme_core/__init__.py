"""The gRPC core of the ingestion service: every event rule, enrichment and storage.

Nothing here imports aiohttp; the HTTP façade talks to this package only over gRPC.
"""
