"""A typed asyncio client for `prisme.v1.EventService`, and the errors it raises."""

from prisme_client.errors import PrismeError, error_from_rpc

__all__ = ["PrismeError", "error_from_rpc"]
