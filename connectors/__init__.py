"""Channel connectors. ``REGISTRY`` maps each channel to its connector class, explicitly."""

from __future__ import annotations

from connectors.base import Connector
from connectors.email.connector import EmailConnector
from connectors.messenger.connector import MessengerConnector
from connectors.telegram.connector import TelegramConnector
from connectors.twilio.connector import TwilioConnector
from connectors.webchat.connector import WebChatConnector
from connectors.webform import WebFormConnector
from ingest.model import Channel

REGISTRY: dict[Channel, type[Connector]] = {
    Channel.WEBFORM: WebFormConnector,
    Channel.EMAIL: EmailConnector,
    # One Twilio account carries all three; the app builds one instance for them.
    Channel.SMS: TwilioConnector,
    Channel.WHATSAPP: TwilioConnector,
    Channel.VOICE: TwilioConnector,
    Channel.MESSENGER: MessengerConnector,
    Channel.TELEGRAM: TelegramConnector,
    Channel.WEBCHAT: WebChatConnector,
}

__all__ = ["REGISTRY", "Connector"]
