"""Channel connectors. ``REGISTRY`` maps each channel to its connector class, explicitly."""

from __future__ import annotations

from connectors.base import Connector
from connectors.email.connector import EmailConnector
from connectors.twilio.connector import TwilioConnector
from connectors.webform import WebFormConnector
from ingest.model import Channel

REGISTRY: dict[Channel, type[Connector]] = {
    Channel.WEBFORM: WebFormConnector,
    Channel.EMAIL: EmailConnector,
    # One Twilio account carries all three; the app builds one instance for them.
    Channel.SMS: TwilioConnector,
    Channel.WHATSAPP: TwilioConnector,
    Channel.VOICE: TwilioConnector,
}

__all__ = ["REGISTRY", "Connector"]
