"""The fault tests run the whole service against every provider fake the connector tests use."""

from tests.connectors.email.conftest import dovecot, own_dovecot, start_smtp  # noqa: F401
from tests.connectors.messenger.conftest import fake_graph  # noqa: F401
from tests.connectors.telegram.conftest import fake_telegram  # noqa: F401
from tests.connectors.twilio.conftest import fake_twilio  # noqa: F401
