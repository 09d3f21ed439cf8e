"""Words of the reply box: answer on a channel of the contact, canned answers, notes, resolve with
an answer.
"""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "replybox_title": "Antwoorden",
        "replybox_closed": "Dit ticket is gesloten. Heropen het eerst om de burger te antwoorden.",
        "replybox_canned": "Standaardantwoord",
        "replybox_canned_none": "— kies een standaardantwoord —",
        "replybox_canned_fill": "Invullen",
        "replybox_canned_hint": "Het antwoord komt in het tekstvak. Pas het aan voor u verstuurt.",
        "replybox_channel": "Versturen via",
        "replybox_channel_default": "kanaal van het ticket",
        "replybox_why_no_connector": "geen verbinding ingesteld voor dit kanaal",
        "replybox_waits_no_connector": (
            "Er is nog geen verbinding voor dit kanaal. Het antwoord wacht in de outbox tot die "
            "er is."
        ),
        "replybox_waits_not_replyable": (
            "Op dit kanaal kan geen antwoord terug, en we kennen geen ander adres van de burger. "
            "Het antwoord blijft bij het ticket."
        ),
        "replybox_waits_no_address": (
            "We hebben geen adres van de burger voor dit kanaal. Het antwoord wacht in de outbox."
        ),
        "replybox_no_files": "Dit kanaal stuurt geen bestanden mee: ze blijven bij het ticket.",
        "replybox_text": "Uw antwoord aan de burger",
        "replybox_count_sms": "{characters} tekens · {parts} sms",
        "replybox_count_chars": "{characters} tekens",
        "replybox_count_note": (
            "Bij afhandelen komt uw antwoord in het vaste bericht 'afgehandeld'; dat kan langer "
            "zijn."
        ),
        "replybox_files": "Bestanden (hoogstens {count}, elk tot {size})",
        "replybox_resolve": (
            "Afhandelen met dit antwoord (de burger krijgt het bericht dat het klaar is)"
        ),
        "replybox_send": "Antwoord versturen",
        "replybox_window_closed": (
            "Let op: {channel} laat geen vrij antwoord meer toe. Dat mag maar tot {hours} uur "
            "na het laatste bericht van de burger."
        ),
        "replybox_window_last": "De burger schreef het laatst via {channel} op {when}.",
        "replybox_window_never": "De burger schreef nog nooit via {channel}.",
        "replybox_window_human": (
            "Het venster van {hours} uur is voorbij, maar {channel} laat een antwoord van een "
            "medewerker nog 7 dagen toe. Uw antwoord gaat dus gewoon weg."
        ),
        "replybox_window_template": (
            "De burger krijgt eerst een vast WhatsApp-bericht met de vraag om te antwoorden."
        ),
        "replybox_window_fallback": "Uw antwoord gaat daarom via {channel} naar {address}.",
        "replybox_window_wait": (
            "Uw antwoord wacht tot de burger opnieuw schrijft via {channel}. Dan gaat het "
            "vanzelf weg."
        ),
        "replybox_note_title": "Interne notitie",
        "replybox_note_label": "Notitie — intern: de burger ziet dit nooit",
        "replybox_note_save": "Notitie bewaren",
        "replybox_done_sent": "Uw antwoord staat klaar om te versturen.",
        "replybox_done_resolved": (
            "Het ticket is afgehandeld. De burger krijgt uw antwoord in het bericht dat het "
            "klaar is."
        ),
        "replybox_done_note": "De interne notitie is bewaard. De burger ziet ze niet.",
        "replybox_error_empty": "Schrijf eerst een antwoord.",
        "replybox_error_long": "Het antwoord is te lang: hoogstens {limit} tekens.",
        "replybox_error_note": "Schrijf een notitie van hoogstens {limit} tekens.",
        "replybox_error_channel": (
            "Via dat kanaal kunnen we deze burger niet bereiken. Kies een ander kanaal."
        ),
        "replybox_error_files": "Te veel bestanden: hoogstens {count}.",
        "replybox_error_big": (
            "Het bestand '{name}' is te groot: hoogstens {size} per bestand. Uw tekst is "
            "bewaard; kies de bestanden opnieuw."
        ),
        "replybox_error_empty_file": "Het bestand '{name}' is leeg.",
        "replybox_error_body": (
            "De bestanden samen zijn te groot: hoogstens {files} bestanden van elk {size}."
        ),
        "replybox_error_closed": (
            "Dit ticket is gesloten. Heropen het eerst om de burger te antwoorden."
        ),
        "replybox_error_status": "Dit ticket kan nu niet afgehandeld worden.",
        "replybox_error_other": "Het antwoord kon niet verstuurd worden",
    },
    "fr": {
        "replybox_title": "Répondre",
        "replybox_closed": "Ce ticket est fermé. Rouvrez-le d'abord pour répondre au citoyen.",
        "replybox_canned": "Réponse type",
        "replybox_canned_none": "— choisir une réponse type —",
        "replybox_canned_fill": "Insérer",
        "replybox_canned_hint": "La réponse va dans la zone de texte. Adaptez-la avant l'envoi.",
        "replybox_channel": "Envoyer par",
        "replybox_channel_default": "canal du ticket",
        "replybox_why_no_connector": "aucune connexion configurée pour ce canal",
        "replybox_waits_no_connector": (
            "Il n'y a pas encore de connexion pour ce canal. La réponse attend dans la file "
            "d'envoi."
        ),
        "replybox_waits_not_replyable": (
            "Ce canal ne permet pas de répondre, et nous n'avons pas d'autre adresse du citoyen. "
            "La réponse reste dans le ticket."
        ),
        "replybox_waits_no_address": (
            "Nous n'avons pas d'adresse du citoyen pour ce canal. La réponse attend dans la file "
            "d'envoi."
        ),
        "replybox_no_files": "Ce canal n'envoie pas de fichiers : ils restent dans le ticket.",
        "replybox_text": "Votre réponse au citoyen",
        "replybox_count_sms": "{characters} caractères · {parts} SMS",
        "replybox_count_chars": "{characters} caractères",
        "replybox_count_note": (
            "En clôturant, votre réponse est placée dans le message « traité », qui peut être "
            "plus long."
        ),
        "replybox_files": "Fichiers (au plus {count}, chacun jusqu'à {size})",
        "replybox_resolve": "Traiter avec cette réponse (le citoyen reçoit le message de fin)",
        "replybox_send": "Envoyer la réponse",
        "replybox_window_closed": (
            "Attention : {channel} n'accepte plus de réponse libre. C'est possible seulement "
            "jusqu'à {hours} heures après le dernier message du citoyen."
        ),
        "replybox_window_last": "Le citoyen a écrit la dernière fois par {channel} le {when}.",
        "replybox_window_never": "Le citoyen n'a jamais écrit par {channel}.",
        "replybox_window_human": (
            "Le délai de {hours} heures est passé, mais {channel} accepte encore la réponse d'un "
            "agent pendant 7 jours. Votre réponse part donc normalement."
        ),
        "replybox_window_template": (
            "Le citoyen reçoit d'abord un message WhatsApp fixe qui lui demande de répondre."
        ),
        "replybox_window_fallback": "Votre réponse part donc par {channel} à {address}.",
        "replybox_window_wait": (
            "Votre réponse attend que le citoyen écrive de nouveau par {channel}. Elle part "
            "alors toute seule."
        ),
        "replybox_note_title": "Note interne",
        "replybox_note_label": "Note — interne : le citoyen ne la voit jamais",
        "replybox_note_save": "Enregistrer la note",
        "replybox_done_sent": "Votre réponse est prête à partir.",
        "replybox_done_resolved": (
            "Le ticket est traité. Le citoyen reçoit votre réponse dans le message de fin."
        ),
        "replybox_done_note": "La note interne est enregistrée. Le citoyen ne la voit pas.",
        "replybox_error_empty": "Écrivez d'abord une réponse.",
        "replybox_error_long": "La réponse est trop longue : au plus {limit} caractères.",
        "replybox_error_note": "Écrivez une note d'au plus {limit} caractères.",
        "replybox_error_channel": (
            "Ce canal ne permet pas de joindre ce citoyen. Choisissez un autre canal."
        ),
        "replybox_error_files": "Trop de fichiers : au plus {count}.",
        "replybox_error_big": (
            "Le fichier « {name} » est trop grand : au plus {size} par fichier. Votre texte est "
            "gardé ; choisissez à nouveau les fichiers."
        ),
        "replybox_error_empty_file": "Le fichier « {name} » est vide.",
        "replybox_error_body": (
            "Les fichiers ensemble sont trop grands : au plus {files} fichiers de {size} chacun."
        ),
        "replybox_error_closed": "Ce ticket est fermé. Rouvrez-le d'abord pour répondre.",
        "replybox_error_status": "Ce ticket ne peut pas être traité maintenant.",
        "replybox_error_other": "La réponse n'a pas pu être envoyée",
    },
    "en": {
        "replybox_title": "Reply",
        "replybox_closed": "This ticket is closed. Reopen it first to answer the citizen.",
        "replybox_canned": "Canned answer",
        "replybox_canned_none": "— choose a canned answer —",
        "replybox_canned_fill": "Fill in",
        "replybox_canned_hint": "The answer goes in the text box. Adapt it before sending.",
        "replybox_channel": "Send by",
        "replybox_channel_default": "the ticket's channel",
        "replybox_why_no_connector": "no connection set up for this channel",
        "replybox_waits_no_connector": (
            "There is no connection for this channel yet. The answer waits in the outbox."
        ),
        "replybox_waits_not_replyable": (
            "This channel cannot carry an answer, and we know no other address of the citizen. "
            "The answer stays on the ticket."
        ),
        "replybox_waits_no_address": (
            "We have no address of the citizen for this channel. The answer waits in the outbox."
        ),
        "replybox_no_files": "This channel does not send files: they stay on the ticket.",
        "replybox_text": "Your answer to the citizen",
        "replybox_count_sms": "{characters} characters · {parts} SMS",
        "replybox_count_chars": "{characters} characters",
        "replybox_count_note": (
            "When resolving, your answer goes in the 'resolved' message, which can be longer."
        ),
        "replybox_files": "Files (at most {count}, each up to {size})",
        "replybox_resolve": (
            "Resolve with this answer (the citizen gets the message that it is done)"
        ),
        "replybox_send": "Send answer",
        "replybox_window_closed": (
            "Note: {channel} no longer takes a free answer. That is only allowed up to {hours} "
            "hours after the citizen's last message."
        ),
        "replybox_window_last": "The citizen last wrote on {channel} on {when}.",
        "replybox_window_never": "The citizen never wrote on {channel}.",
        "replybox_window_human": (
            "The {hours}-hour window is over, but {channel} still takes an answer from a staff "
            "member for 7 days. Your answer goes out as usual."
        ),
        "replybox_window_template": (
            "The citizen first gets a fixed WhatsApp message asking them to reply."
        ),
        "replybox_window_fallback": "So your answer goes by {channel} to {address}.",
        "replybox_window_wait": (
            "Your answer waits until the citizen writes again on {channel}. Then it goes out "
            "by itself."
        ),
        "replybox_note_title": "Internal note",
        "replybox_note_label": "Note — internal: the citizen never sees this",
        "replybox_note_save": "Save note",
        "replybox_done_sent": "Your answer is queued to be sent.",
        "replybox_done_resolved": (
            "The ticket is resolved. The citizen gets your answer in the message that it is done."
        ),
        "replybox_done_note": "The internal note is saved. The citizen does not see it.",
        "replybox_error_empty": "Write an answer first.",
        "replybox_error_long": "The answer is too long: at most {limit} characters.",
        "replybox_error_note": "Write a note of at most {limit} characters.",
        "replybox_error_channel": (
            "We cannot reach this citizen on that channel. Choose another channel."
        ),
        "replybox_error_files": "Too many files: at most {count}.",
        "replybox_error_big": (
            "The file '{name}' is too large: at most {size} per file. Your text is kept; choose "
            "the files again."
        ),
        "replybox_error_empty_file": "The file '{name}' is empty.",
        "replybox_error_body": (
            "The files together are too large: at most {files} files of {size} each."
        ),
        "replybox_error_closed": "This ticket is closed. Reopen it first to answer.",
        "replybox_error_status": "This ticket cannot be resolved now.",
        "replybox_error_other": "The answer could not be sent",
    },
}
