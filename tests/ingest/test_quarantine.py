"""A quarantined message can be listed and, once the cause is fixed, processed again."""

from __future__ import annotations

import pytest

from ingest.pipeline import Intake, IntakePolicy
from ingest.quarantine import list_quarantined, retry_quarantined
from router.rules import RoutingInput, RuleSet
from store.db import Database
from tests.messages import inbound, sample_rules


class BrokenRules:
    """Stands in for a rule set with a bug that raises on some messages."""

    def __init__(self, good: RuleSet) -> None:
        self.good = good

    def route(self, msg: RoutingInput) -> object:
        if "BOOM" in msg.text:
            raise RuntimeError("rule engine exploded")
        return self.good.route(msg)


async def test_quarantined_message_is_listed_and_retried_once_fixed(database: Database) -> None:
    good = sample_rules()
    current: list[object] = [BrokenRules(good)]
    intake = Intake(database.engine, lambda: current[0], IntakePolicy(reference_prefix="Q"))  # type: ignore[arg-type,return-value]
    await intake.start()
    try:
        bad = await intake.submit(inbound("BOOM: de straatlamp is stuk", email="an@example.be"))
        assert bad.quarantined

        [entry] = await list_quarantined(database.engine)
        assert entry.channel == "webform"
        assert "rule engine exploded" in entry.error

        still_broken = await retry_quarantined(database.engine, intake, entry.id)
        assert still_broken is not None and still_broken.quarantined
        [again] = await list_quarantined(database.engine)  # one entry per message, the newest
        assert again.id != entry.id

        current[0] = good  # the operator fixed the rules
        fixed = await retry_quarantined(database.engine, intake, again.id)
        assert fixed is not None and fixed.new_ticket
        assert fixed.ticket_reference == "Q-000001"
        assert await list_quarantined(database.engine) == []
        with pytest.raises(LookupError):
            await retry_quarantined(database.engine, intake, again.id)
    finally:
        await intake.stop()
