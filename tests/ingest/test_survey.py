"""Survey replies as citizens write them, in Dutch, French and English."""

from __future__ import annotations

import pytest

from ingest.survey import read_answer, wants_no_more

# (reply, score, whether the reply is kept as a comment)
REPLIES = [
    ("4", 4, False),
    (" 5 ", 5, False),
    ("4/5", 4, False),
    ("3 op 5", 3, False),
    ("2 sur 5", 2, False),
    ("1 out of 5", 1, False),
    ("vier", 4, False),
    ("Vijf!", 5, False),
    ("vijf op vijf", 5, False),
    ("quatre", 4, False),
    ("Cinq.", 5, False),
    ("three", 3, False),
    ("een", 1, False),
    ("un sur cinq", 1, False),
    ("Ik geef een 3", 3, True),
    ("Ik geef jullie een vier", 4, True),
    ("4 maar het duurde wel lang", 4, True),
    ("5, vriendelijke mensen aan de balie", 5, True),
    ("😊", 4, False),
    ("😡😡", 1, False),
    ("👍", 4, False),
    ("⭐⭐⭐⭐", 4, False),
    ("★★", 2, False),
    ("slecht", 2, False),
    ("Zeer slecht, niemand belde terug", 1, True),
    ("niet goed", 2, False),
    ("niet slecht", 3, False),
    ("goed 👍", 4, False),
    ("zeer tevreden", 5, False),
    ("Redelijk", 3, False),
    ("uitstekend geholpen, dank u", 5, True),
    ("très bien merci", 5, True),
    ("pas bien du tout", 2, True),
    ("pas mal", 4, False),
    ("moyen", 3, False),
    ("Not bad", 3, False),
    ("very good, thanks!", 5, True),
    ("terrible", 1, False),
    ("2 weken gewacht, slecht", 2, True),
]

# Replies that give no score: asked again rather than guessed.
NO_SCORE = ["10", "0", "3,5", "1750", "bel me op 0470123456", "hallo?", "wie is dit", ""]


@pytest.mark.parametrize(("reply", "score", "commented"), REPLIES)
def test_a_reply_in_the_citizens_words_gives_its_score(
    reply: str, score: int, commented: bool
) -> None:
    answer = read_answer(reply)
    assert answer.score == score
    assert answer.comment == (reply.strip() if commented else None)


@pytest.mark.parametrize("reply", NO_SCORE)
def test_a_reply_without_a_clear_score_gives_none_and_keeps_the_words(reply: str) -> None:
    answer = read_answer(reply)
    assert answer.score is None
    assert answer.comment == (reply.strip() or None)


@pytest.mark.parametrize("reply", ["STOP", "stop!", "Afmelden", "désinscrire", "Unsubscribe"])
def test_stop_replies_opt_out(reply: str) -> None:
    assert wants_no_more(reply)


@pytest.mark.parametrize("reply", ["ik wil stoppen met wachten", "4", "stop het lawaai aub"])
def test_a_sentence_with_stop_in_it_is_no_opt_out(reply: str) -> None:
    assert not wants_no_more(reply)
