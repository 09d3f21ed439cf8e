"""Words of registering a ticket by hand: a desk visit, a phone call, a field report."""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "register_ticket": "Nieuw ticket",
        "register_title": "Een ticket registreren",
        "register_intro": "Noteer wat een burger aan het loket of aan de telefoon vertelt, of wat "
        "u zelf op straat zag. Het ticket gaat naar de juiste dienst, zoals elk ander bericht.",
        "register_way": "Hoe kwam het binnen?",
        "register_way_desk": "Bezoek aan het loket",
        "register_way_phone": "Telefoongesprek",
        "register_way_field": "Zelf gezien op het terrein",
        "register_citizen": "De burger",
        "register_citizen_hint": "Met een e-mailadres of telefoonnummer kunnen we de burger "
        "antwoorden. Zag u het zelf en is er geen burger bij? Laat dit dan leeg.",
        "register_name": "Naam",
        "register_phone": "Telefoonnummer",
        "register_language": "Taal van de burger",
        "register_message": "Het bericht",
        "register_subject": "Onderwerp (mag leeg blijven)",
        "register_text": "Wat is er aan de hand?",
        "register_place": "Plaats",
        "register_address": "Adres of plaats",
        "register_latitude": "Breedtegraad",
        "register_longitude": "Lengtegraad",
        "register_use_location": "Gebruik mijn locatie",
        "register_locating": "Uw locatie wordt gezocht…",
        "register_located": "Uw locatie is ingevuld.",
        "register_not_located": "Uw locatie is niet gevonden. Typ het adres of de coördinaten.",
        "register_files": "Foto's of bestanden",
        "register_files_hint": "Hoogstens {count} bestanden, elk hoogstens {size}.",
        "register_confirm": "Stuur de burger een ontvangstbevestiging met het ticketnummer",
        "register_confirm_hint": "Per e-mail, of anders per sms. Alleen als er een e-mailadres "
        "of telefoonnummer is ingevuld.",
        "register_submit": "Ticket registreren",
        "register_fix": "Het ticket is nog niet geregistreerd. Verbeter wat hieronder in het "
        "rood staat.",
        "register_files_again": "Kies ook de foto's en bestanden opnieuw: die houdt de browser "
        "niet bij.",
        "register_error_way": "Kies hoe het binnenkwam.",
        "register_error_who": "Vul een naam, een e-mailadres of een telefoonnummer in.",
        "register_error_email": "Dit e-mailadres klopt niet. Voorbeeld: naam@voorbeeld.be",
        "register_error_phone": "Dit telefoonnummer klopt niet. Voorbeeld: 0470 12 34 56",
        "register_error_text": "Schrijf wat er aan de hand is.",
        "register_error_long": "Dit is te lang. Hoogstens {max} tekens.",
        "register_error_choice": "Kies een van de mogelijkheden.",
        "register_error_coordinates": "Vul breedte- en lengtegraad allebei in, als getal. "
        "Voorbeeld: 51,0478 en 3,2701.",
        "register_error_file_big": "Het bestand '{name}' is te groot. Een bestand mag "
        "hoogstens {size} zijn.",
        "register_error_file_count": "Stuur hoogstens {count} bestanden mee.",
        "register_error_upload_big": "De bestanden waren samen te groot. Er is niets bewaard. "
        "Vul het formulier opnieuw in, met minder of kleinere foto's.",
        "register_unavailable": "Er is een storing. Het ticket is NIET geregistreerd. Probeer "
        "het over enkele minuten opnieuw.",
        "register_done": "Ticket {reference} is geregistreerd. Geef de burger dit nummer: "
        "{reference}.",
        "register_done_elsewhere": "Ticket {reference} is geregistreerd en ging naar "
        "{department}. U kunt het zelf niet openen. Geef de burger dit nummer: {reference}.",
        "register_by": "Met de hand geregistreerd door {name}: {way}.",
        "register_map": "Bekijk op de kaart",
        # The history of the ticket page names events by "conv_event_<type>".
        "conv_event_registered": "Met de hand geregistreerd",
    },
    "fr": {
        "register_ticket": "Nouveau ticket",
        "register_title": "Enregistrer un ticket",
        "register_intro": "Notez ce qu'un citoyen dit au guichet ou au téléphone, ou ce que vous "
        "avez vu vous-même dans la rue. Le ticket va au bon service, comme tout autre message.",
        "register_way": "Comment est-il arrivé ?",
        "register_way_desk": "Visite au guichet",
        "register_way_phone": "Appel téléphonique",
        "register_way_field": "Vu sur le terrain",
        "register_citizen": "Le citoyen",
        "register_citizen_hint": "Avec une adresse e-mail ou un numéro de téléphone, nous pouvons "
        "répondre au citoyen. Vous l'avez vu vous-même, sans citoyen ? Laissez vide.",
        "register_name": "Nom",
        "register_phone": "Numéro de téléphone",
        "register_language": "Langue du citoyen",
        "register_message": "Le message",
        "register_subject": "Objet (facultatif)",
        "register_text": "De quoi s'agit-il ?",
        "register_place": "Lieu",
        "register_address": "Adresse ou lieu",
        "register_latitude": "Latitude",
        "register_longitude": "Longitude",
        "register_use_location": "Utiliser ma position",
        "register_locating": "Recherche de votre position…",
        "register_located": "Votre position est remplie.",
        "register_not_located": "Votre position est introuvable. Tapez l'adresse ou les "
        "coordonnées.",
        "register_files": "Photos ou fichiers",
        "register_files_hint": "Au plus {count} fichiers, chacun au plus {size}.",
        "register_confirm": "Envoyer au citoyen un accusé de réception avec le numéro du ticket",
        "register_confirm_hint": "Par e-mail, sinon par SMS. Seulement si une adresse e-mail ou "
        "un numéro de téléphone est rempli.",
        "register_submit": "Enregistrer le ticket",
        "register_fix": "Le ticket n'est pas encore enregistré. Corrigez ce qui est en rouge "
        "ci-dessous.",
        "register_files_again": "Choisissez aussi à nouveau les photos et fichiers : le "
        "navigateur ne les garde pas.",
        "register_error_way": "Choisissez comment il est arrivé.",
        "register_error_who": "Remplissez un nom, une adresse e-mail ou un numéro de téléphone.",
        "register_error_email": "Cette adresse e-mail n'est pas correcte. Exemple : nom@exemple.be",
        "register_error_phone": "Ce numéro de téléphone n'est pas correct. Exemple : 0470 12 34 56",
        "register_error_text": "Écrivez de quoi il s'agit.",
        "register_error_long": "C'est trop long. Au plus {max} caractères.",
        "register_error_choice": "Choisissez une des possibilités.",
        "register_error_coordinates": "Remplissez la latitude et la longitude, toutes les deux, "
        "en chiffres. Exemple : 51,0478 et 3,2701.",
        "register_error_file_big": "Le fichier '{name}' est trop grand. Un fichier peut faire "
        "au plus {size}.",
        "register_error_file_count": "Envoyez au plus {count} fichiers.",
        "register_error_upload_big": "Les fichiers étaient trop grands ensemble. Rien n'est "
        "enregistré. Remplissez à nouveau le formulaire, avec moins de photos ou des plus "
        "petites.",
        "register_unavailable": "Il y a une panne. Le ticket n'est PAS enregistré. Réessayez "
        "dans quelques minutes.",
        "register_done": "Le ticket {reference} est enregistré. Donnez ce numéro au citoyen : "
        "{reference}.",
        "register_done_elsewhere": "Le ticket {reference} est enregistré et est allé à "
        "{department}. Vous ne pouvez pas l'ouvrir vous-même. Donnez ce numéro au citoyen : "
        "{reference}.",
        "register_by": "Enregistré à la main par {name} : {way}.",
        "register_map": "Voir sur la carte",
        "conv_event_registered": "Enregistré à la main",
    },
    "en": {
        "register_ticket": "New ticket",
        "register_title": "Register a ticket",
        "register_intro": "Write down what a citizen tells you at the desk or on the phone, or "
        "what you saw yourself in the street. The ticket goes to the right department, like "
        "any other message.",
        "register_way": "How did it come in?",
        "register_way_desk": "Visit at the desk",
        "register_way_phone": "Phone call",
        "register_way_field": "Seen in the field",
        "register_citizen": "The citizen",
        "register_citizen_hint": "With an e-mail address or a phone number we can answer the "
        "citizen. Did you see it yourself, with no citizen involved? Leave this empty.",
        "register_name": "Name",
        "register_phone": "Phone number",
        "register_language": "Language of the citizen",
        "register_message": "The message",
        "register_subject": "Subject (may stay empty)",
        "register_text": "What is it about?",
        "register_place": "Place",
        "register_address": "Address or place",
        "register_latitude": "Latitude",
        "register_longitude": "Longitude",
        "register_use_location": "Use my location",
        "register_locating": "Looking for your location…",
        "register_located": "Your location is filled in.",
        "register_not_located": "Your location was not found. Type the address or the coordinates.",
        "register_files": "Photos or files",
        "register_files_hint": "At most {count} files, each at most {size}.",
        "register_confirm": "Send the citizen a confirmation with the ticket's number",
        "register_confirm_hint": "By e-mail, else by SMS. Only when an e-mail address or a "
        "phone number is filled in.",
        "register_submit": "Register the ticket",
        "register_fix": "The ticket is not registered yet. Correct what is in red below.",
        "register_files_again": "Choose the photos and files again too: the browser does not "
        "keep them.",
        "register_error_way": "Choose how it came in.",
        "register_error_who": "Fill in a name, an e-mail address or a phone number.",
        "register_error_email": "This e-mail address is not right. Example: name@example.be",
        "register_error_phone": "This phone number is not right. Example: 0470 12 34 56",
        "register_error_text": "Write what it is about.",
        "register_error_long": "This is too long. At most {max} characters.",
        "register_error_choice": "Choose one of the options.",
        "register_error_coordinates": "Fill in both latitude and longitude, as numbers. "
        "Example: 51.0478 and 3.2701.",
        "register_error_file_big": "The file '{name}' is too big. A file may be at most {size}.",
        "register_error_file_count": "Send at most {count} files.",
        "register_error_upload_big": "The files were too big together. Nothing was saved. Fill "
        "in the form again, with fewer or smaller photos.",
        "register_unavailable": "Something is broken. The ticket is NOT registered. Try again "
        "in a few minutes.",
        "register_done": "Ticket {reference} is registered. Give the citizen this number: "
        "{reference}.",
        "register_done_elsewhere": "Ticket {reference} is registered and went to {department}. "
        "You cannot open it yourself. Give the citizen this number: {reference}.",
        "register_by": "Registered by hand by {name}: {way}.",
        "register_map": "Show on the map",
        "conv_event_registered": "Registered by hand",
    },
}
