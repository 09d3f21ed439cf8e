"""The journal's normalised copy of a message: what goes in comes back, old copies still read."""

from __future__ import annotations

import dataclasses
import json

from ingest.codec import message_from_envelope, message_to_envelope
from ingest.model import Attachment, Channel, ThreadHints
from tests.messages import inbound

PHOTO = Attachment(
    filename="IMG_0042.png",
    content_type="image/png",
    size=2061,
    sha256="ab" * 32,
    content_id="9F2B7C1E-4D3A-4B5C-8E6F-7A8B9C0D1E2F",
)
REFUSED = Attachment(
    filename="film.mov",
    content_type="video/quicktime",
    size=31_457_280,
    sha256=None,
    removed_reason="larger than 15 MB",
)


def test_a_message_with_files_survives_the_journal() -> None:
    message = dataclasses.replace(
        inbound(
            "Zie de foto.",
            channel=Channel.EMAIL,
            kind=None,
            hints=ThreadHints(message_ids=("a@example.be",), reference="MP-000012"),
        ),
        html='<p>Zie de foto.</p><img src="cid:9F2B7C1E-4D3A-4B5C-8E6F-7A8B9C0D1E2F">',
        attachments=(PHOTO, REFUSED),
    )
    # Through JSON, as the journal stores it.
    envelope = json.loads(json.dumps(message_to_envelope(message)))
    assert message_from_envelope(envelope, message.raw) == message


def test_a_file_journalled_before_content_ids_were_kept_still_reads() -> None:
    message = dataclasses.replace(inbound("Zie de foto."), attachments=(PHOTO,))
    envelope = message_to_envelope(message)
    del envelope["attachments"][0]["content_id"]
    [restored] = message_from_envelope(envelope, message.raw).attachments
    assert restored == dataclasses.replace(PHOTO, content_id=None)
