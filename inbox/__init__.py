"""The staff side of meldpunt: the unified inbox and its REST API under ``/api/v1``."""

from inbox.api import ApiContext, create_api

__all__ = ["ApiContext", "create_api"]
