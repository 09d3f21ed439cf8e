"""Channel connectors. ``REGISTRY`` maps each channel to its connector class, explicitly."""

from __future__ import annotations

from connectors.base import Connector
from connectors.webform import WebFormConnector
from ingest.model import Channel

REGISTRY: dict[Channel, type[Connector]] = {
    Channel.WEBFORM: WebFormConnector,
}

__all__ = ["REGISTRY", "Connector"]
