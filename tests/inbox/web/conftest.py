"""The whole service with a hand-moved clock and one agent (tests/inbox/web/test_signin.py)."""

from tests.inbox.web.test_signin import town  # noqa: F401 - a fixture, found by its name
