"""Words of work actions on a ticket: assign, transfer, kind, priority, tags, status, merging."""

from __future__ import annotations

from collections.abc import Mapping

WORDS: Mapping[str, Mapping[str, str]] = {
    "nl": {
        # Names of this part's events in the ticket's history (web/ticket_history.html).
        "conv_event_assigned": "Toegewezen",
        "conv_event_kind_changed": "Soort gewijzigd",
        "conv_event_priority_changed": "Prioriteit gewijzigd",
        "conv_event_tags_changed": "Labels gewijzigd",
        "conv_event_merged_into": "Samengevoegd met een ander ticket",
        "conv_event_merged": "Ander ticket hierin samengevoegd",
        "conv_event_contact_merged": "Burgers samengevoegd",
        "actions_title": "Acties",
        "actions_assignee": "Toegewezen aan",
        "actions_nobody": "niemand",
        "actions_assign_me": "Aan mij toewijzen",
        "actions_assign_to": "Toewijzen aan collega",
        "actions_assign": "Toewijzen",
        "actions_unassign": "Aan niemand toewijzen",
        "actions_transfer_title": "Doorsturen naar een andere dienst",
        "actions_transfer_to": "Naar dienst",
        "actions_reason": "Reden",
        "actions_transfer_reason_hint": "Waarom gaat dit ticket naar die dienst?",
        "actions_transfer": "Doorsturen",
        "actions_details_title": "Soort, prioriteit en labels",
        "actions_priority": "Prioriteit",
        "actions_priority_low": "laag",
        "actions_priority_normal": "normaal",
        "actions_priority_high": "hoog",
        "actions_priority_urgent": "dringend",
        "actions_tags": "Labels",
        "actions_tags_hint": "Gescheiden door komma's, bv. verlichting, kerkstraat",
        "actions_save": "Opslaan",
        "actions_status_title": "Status wijzigen",
        "actions_new_status": "Nieuwe status",
        "actions_status_reason_hint": (
            "Nodig om af te handelen of te sluiten zonder antwoord aan de burger."
        ),
        "actions_change_status": "Status wijzigen",
        "actions_no_status_change": "De status kan nu niet gewijzigd worden.",
        "actions_merge_title": "Dubbel ticket samenvoegen",
        "actions_merge_into": "Dit ticket samenvoegen met ticket (nummer)",
        "actions_merge_hint": (
            "De berichten van dit ticket gaan naar het andere ticket. Dit ticket wordt gesloten."
        ),
        "actions_merge": "Samenvoegen",
        "actions_contact_title": "Zelfde burger samenvoegen",
        "actions_contact_other": "De burger van ticket (nummer)",
        "actions_contact_hint": (
            "Is de burger van dat ticket dezelfde persoon als {name}? Dan komen zijn adressen "
            "en tickets bij {name}."
        ),
        "actions_this_citizen": "deze burger",
        "actions_contact_merge": "Burgers samenvoegen",
        "actions_merged_into": "Dit ticket is samengevoegd met ticket",
        "actions_merged_from": "Samengevoegd uit",
        # Notices after an action.
        "actions_done_assigned": "Het ticket is toegewezen aan {name}.",
        "actions_done_unassigned": "Het ticket is aan niemand toegewezen.",
        "actions_done_transferred": "Het ticket is doorgestuurd naar {department}.",
        "actions_done_transferred_away": (
            "Ticket {reference} is doorgestuurd naar {department}. U ziet het niet meer."
        ),
        "actions_done_details": "Soort, prioriteit en labels zijn opgeslagen.",
        "actions_done_status": "De status is nu: {status}.",
        "actions_done_merged": "{source} is samengevoegd met dit ticket ({count} berichten).",
        "actions_done_contacts": "De burgers zijn samengevoegd ({count} tickets).",
        # Errors.
        "actions_error_unchanged": "Er is niets gewijzigd: dat was al zo.",
        "actions_error_not_assignable": (
            "Die persoon kan dit ticket niet krijgen: kies iemand van de dienst."
        ),
        "actions_error_reason_needed": "Geef een reden.",
        "actions_error_unknown_department": "Kies een dienst uit de lijst.",
        "actions_error_reason_required": (
            "Geef een reden om af te handelen of te sluiten zonder antwoord aan de burger. "
            "Of stuur een antwoord met het antwoordvak."
        ),
        "actions_error_invalid_transition": "Die statuswijziging kan niet.",
        "actions_error_forbidden_reopen": (
            "Alleen een beheerder of operator kan een gesloten ticket heropenen."
        ),
        "actions_error_invalid_tags": (
            "Te veel labels of een label te lang (hoogstens 20 labels van 40 tekens)."
        ),
        "actions_error_bad_choice": "Kies een waarde uit de lijst.",
        "actions_error_no_ticket": "Geen ticket {reference} gevonden dat u mag zien.",
        "actions_error_same_ticket": "Kies een ander ticket dan dit.",
        "actions_error_already_merged": "Dit ticket is al samengevoegd met {into}.",
        "actions_error_target_merged": (
            "Dat ticket is zelf samengevoegd met {into}. Voeg samen met {into}."
        ),
        "actions_error_same_contact": "Dat ticket is al van dezelfde burger.",
        "actions_error_contact_scope": (
            "Die burger heeft tickets bij andere diensten. Vraag het aan een beheerder."
        ),
    },
    "fr": {
        "conv_event_assigned": "Attribué",
        "conv_event_kind_changed": "Type changé",
        "conv_event_priority_changed": "Priorité changée",
        "conv_event_tags_changed": "Étiquettes changées",
        "conv_event_merged_into": "Fusionné avec un autre ticket",
        "conv_event_merged": "Autre ticket fusionné ici",
        "conv_event_contact_merged": "Citoyens fusionnés",
        "actions_title": "Actions",
        "actions_assignee": "Attribué à",
        "actions_nobody": "personne",
        "actions_assign_me": "M'attribuer",
        "actions_assign_to": "Attribuer à un collègue",
        "actions_assign": "Attribuer",
        "actions_unassign": "N'attribuer à personne",
        "actions_transfer_title": "Transférer à un autre service",
        "actions_transfer_to": "Au service",
        "actions_reason": "Raison",
        "actions_transfer_reason_hint": "Pourquoi ce ticket va-t-il à ce service ?",
        "actions_transfer": "Transférer",
        "actions_details_title": "Type, priorité et étiquettes",
        "actions_priority": "Priorité",
        "actions_priority_low": "basse",
        "actions_priority_normal": "normale",
        "actions_priority_high": "haute",
        "actions_priority_urgent": "urgente",
        "actions_tags": "Étiquettes",
        "actions_tags_hint": "Séparées par des virgules, p. ex. éclairage, rue de l'église",
        "actions_save": "Enregistrer",
        "actions_status_title": "Changer le statut",
        "actions_new_status": "Nouveau statut",
        "actions_status_reason_hint": (
            "Nécessaire pour traiter ou fermer sans réponse au citoyen."
        ),
        "actions_change_status": "Changer le statut",
        "actions_no_status_change": "Le statut ne peut pas être changé maintenant.",
        "actions_merge_title": "Fusionner un ticket en double",
        "actions_merge_into": "Fusionner ce ticket avec le ticket (numéro)",
        "actions_merge_hint": (
            "Les messages de ce ticket vont à l'autre ticket. Ce ticket est fermé."
        ),
        "actions_merge": "Fusionner",
        "actions_contact_title": "Fusionner le même citoyen",
        "actions_contact_other": "Le citoyen du ticket (numéro)",
        "actions_contact_hint": (
            "Le citoyen de ce ticket est-il la même personne que {name} ? Alors ses adresses "
            "et ses tickets vont à {name}."
        ),
        "actions_this_citizen": "ce citoyen",
        "actions_contact_merge": "Fusionner les citoyens",
        "actions_merged_into": "Ce ticket est fusionné avec le ticket",
        "actions_merged_from": "Fusionné depuis",
        "actions_done_assigned": "Le ticket est attribué à {name}.",
        "actions_done_unassigned": "Le ticket n'est attribué à personne.",
        "actions_done_transferred": "Le ticket est transféré à {department}.",
        "actions_done_transferred_away": (
            "Le ticket {reference} est transféré à {department}. Vous ne le voyez plus."
        ),
        "actions_done_details": "Type, priorité et étiquettes sont enregistrés.",
        "actions_done_status": "Le statut est maintenant : {status}.",
        "actions_done_merged": "{source} est fusionné avec ce ticket ({count} messages).",
        "actions_done_contacts": "Les citoyens sont fusionnés ({count} tickets).",
        "actions_error_unchanged": "Rien n'a changé : c'était déjà ainsi.",
        "actions_error_not_assignable": (
            "Cette personne ne peut pas recevoir ce ticket : choisissez quelqu'un du service."
        ),
        "actions_error_reason_needed": "Donnez une raison.",
        "actions_error_unknown_department": "Choisissez un service dans la liste.",
        "actions_error_reason_required": (
            "Donnez une raison pour traiter ou fermer sans réponse au citoyen. "
            "Ou envoyez une réponse avec la boîte de réponse."
        ),
        "actions_error_invalid_transition": "Ce changement de statut n'est pas possible.",
        "actions_error_forbidden_reopen": (
            "Seul un administrateur ou un opérateur peut rouvrir un ticket fermé."
        ),
        "actions_error_invalid_tags": (
            "Trop d'étiquettes ou une étiquette trop longue (au plus 20 de 40 caractères)."
        ),
        "actions_error_bad_choice": "Choisissez une valeur dans la liste.",
        "actions_error_no_ticket": "Aucun ticket {reference} que vous pouvez voir.",
        "actions_error_same_ticket": "Choisissez un autre ticket que celui-ci.",
        "actions_error_already_merged": "Ce ticket est déjà fusionné avec {into}.",
        "actions_error_target_merged": (
            "Ce ticket est lui-même fusionné avec {into}. Fusionnez avec {into}."
        ),
        "actions_error_same_contact": "Ce ticket est déjà du même citoyen.",
        "actions_error_contact_scope": (
            "Ce citoyen a des tickets dans d'autres services. Demandez à un administrateur."
        ),
    },
    "en": {
        "conv_event_assigned": "Assigned",
        "conv_event_kind_changed": "Kind changed",
        "conv_event_priority_changed": "Priority changed",
        "conv_event_tags_changed": "Tags changed",
        "conv_event_merged_into": "Merged into another ticket",
        "conv_event_merged": "Another ticket merged into this one",
        "conv_event_contact_merged": "Citizens merged",
        "actions_title": "Actions",
        "actions_assignee": "Assigned to",
        "actions_nobody": "nobody",
        "actions_assign_me": "Assign to me",
        "actions_assign_to": "Assign to a colleague",
        "actions_assign": "Assign",
        "actions_unassign": "Assign to nobody",
        "actions_transfer_title": "Transfer to another department",
        "actions_transfer_to": "To department",
        "actions_reason": "Reason",
        "actions_transfer_reason_hint": "Why does this ticket go to that department?",
        "actions_transfer": "Transfer",
        "actions_details_title": "Kind, priority and tags",
        "actions_priority": "Priority",
        "actions_priority_low": "low",
        "actions_priority_normal": "normal",
        "actions_priority_high": "high",
        "actions_priority_urgent": "urgent",
        "actions_tags": "Tags",
        "actions_tags_hint": "Separated by commas, e.g. lighting, church street",
        "actions_save": "Save",
        "actions_status_title": "Change the status",
        "actions_new_status": "New status",
        "actions_status_reason_hint": (
            "Needed to resolve or close without an answer to the citizen."
        ),
        "actions_change_status": "Change status",
        "actions_no_status_change": "The status cannot be changed now.",
        "actions_merge_title": "Merge a duplicate ticket",
        "actions_merge_into": "Merge this ticket into ticket (reference)",
        "actions_merge_hint": (
            "The messages of this ticket go to the other ticket. This ticket is closed."
        ),
        "actions_merge": "Merge",
        "actions_contact_title": "Merge the same citizen",
        "actions_contact_other": "The citizen of ticket (reference)",
        "actions_contact_hint": (
            "Is the citizen of that ticket the same person as {name}? Then their addresses "
            "and tickets go to {name}."
        ),
        "actions_this_citizen": "this citizen",
        "actions_contact_merge": "Merge citizens",
        "actions_merged_into": "This ticket is merged into ticket",
        "actions_merged_from": "Merged from",
        "actions_done_assigned": "The ticket is assigned to {name}.",
        "actions_done_unassigned": "The ticket is assigned to nobody.",
        "actions_done_transferred": "The ticket is transferred to {department}.",
        "actions_done_transferred_away": (
            "Ticket {reference} is transferred to {department}. You no longer see it."
        ),
        "actions_done_details": "Kind, priority and tags are saved.",
        "actions_done_status": "The status is now: {status}.",
        "actions_done_merged": "{source} is merged into this ticket ({count} messages).",
        "actions_done_contacts": "The citizens are merged ({count} tickets).",
        "actions_error_unchanged": "Nothing changed: it was so already.",
        "actions_error_not_assignable": (
            "That person cannot get this ticket: choose someone of the department."
        ),
        "actions_error_reason_needed": "Give a reason.",
        "actions_error_unknown_department": "Choose a department from the list.",
        "actions_error_reason_required": (
            "Give a reason to resolve or close without an answer to the citizen. "
            "Or send an answer with the reply box."
        ),
        "actions_error_invalid_transition": "That status change is not possible.",
        "actions_error_forbidden_reopen": "Only an admin or operator can reopen a closed ticket.",
        "actions_error_invalid_tags": (
            "Too many tags or a tag too long (at most 20 tags of 40 characters)."
        ),
        "actions_error_bad_choice": "Choose a value from the list.",
        "actions_error_no_ticket": "No ticket {reference} that you may see.",
        "actions_error_same_ticket": "Choose another ticket than this one.",
        "actions_error_already_merged": "This ticket is merged into {into} already.",
        "actions_error_target_merged": (
            "That ticket is itself merged into {into}. Merge into {into}."
        ),
        "actions_error_same_contact": "That ticket is of the same citizen already.",
        "actions_error_contact_scope": (
            "That citizen has tickets in other departments. Ask an admin."
        ),
    },
}
