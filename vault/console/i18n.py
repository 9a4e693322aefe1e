"""Every console string, in English and Dutch, in this one catalogue.

The language is the visitor's own choice (the switch on every page, kept in a cookie),
else the best match in Accept-Language, else English.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("en", "nl")
DEFAULT_LANGUAGE = "en"
# Accept-Language headers longer than this are not parsed (a visitor's browser sends a few
# dozen characters).
MAX_ACCEPT_LANGUAGE = 512

# key: (English, Dutch)
CATALOGUE: dict[str, tuple[str, str]] = {
    "app.name": ("datavault console", "datavault-console"),
    "nav.skip": ("Skip to content", "Naar de inhoud"),
    "nav.label": ("Console sections", "Onderdelen van de console"),
    "nav.dashboard": ("Dashboard", "Overzicht"),
    "nav.holds": ("Legal holds", "Bewaarplichten"),
    "nav.erasures": ("Erasures", "Verwijderingen"),
    "nav.subjects": ("Subjects", "Betrokkenen"),
    "nav.access_log": ("Access log", "Toegangslog"),
    "nav.sign_out": ("Sign out", "Afmelden"),
    "nav.signed_in_as": ("Signed in with key {key}", "Aangemeld met sleutel {key}"),
    "lang.label": ("Language", "Taal"),
    "sign_in.title": ("Sign in", "Aanmelden"),
    "sign_in.key": ("API key", "API-sleutel"),
    "sign_in.hint": (
        "A key with the compliance or admin scope, or the erasure scope for the erasure "
        "pages. The key is checked once and exchanged for a session; it is not stored in "
        "your browser. Sessions end after 30 minutes without use and after 8 hours.",
        "Een sleutel met de scope compliance of admin, of erasure voor de pagina's over "
        "verwijderingen. De sleutel wordt één keer gecontroleerd en ingeruild voor een "
        "sessie; hij wordt niet in uw browser bewaard. Een sessie eindigt na 30 minuten "
        "zonder gebruik en na 8 uur.",
    ),
    "sign_in.submit": ("Sign in", "Aanmelden"),
    "sign_in.signed_out": ("You are signed out.", "U bent afgemeld."),
    "sign_in.wrong_key": (
        "This key is not valid (wrong, revoked or expired).",
        "Deze sleutel is niet geldig (onjuist, ingetrokken of verlopen).",
    ),
    "sign_in.wrong_scope": (
        "This key has none of the scopes compliance, admin or erasure.",
        "Deze sleutel heeft geen van de scopes compliance, admin of erasure.",
    ),
    "error.csrf": (
        "This form is out of date or did not come from this console. Reload the page and "
        "try again.",
        "Dit formulier is verouderd of kwam niet van deze console. Laad de pagina opnieuw "
        "en probeer het nog eens.",
    ),
    # Error pages: one sentence per kind of error in the visitor's language; the
    # service's own (English) detail follows it in small print.
    "error.400": ("The request could not be read.", "Het verzoek kon niet worden gelezen."),
    "error.403": (
        "This key may not do this.",
        "Deze sleutel mag dit niet.",
    ),
    "error.404": (
        "Not found (or not in this tenant).",
        "Niet gevonden (of niet van deze tenant).",
    ),
    "error.409": (
        "This cannot be done in the current state.",
        "Dit kan in de huidige toestand niet.",
    ),
    "error.413": ("The form is too large.", "Het formulier is te groot."),
    "error.415": (
        "The form was sent in the wrong format.",
        "Het formulier is in het verkeerde formaat verstuurd.",
    ),
    "error.422": ("A value is not valid.", "Een waarde is niet geldig."),
    "error.429": (
        "Too many failed attempts from this address; wait a minute.",
        "Te veel mislukte pogingen vanaf dit adres; wacht een minuut.",
    ),
    "error.503": (
        "The vault is briefly unavailable; try again shortly.",
        "De kluis is even niet beschikbaar; probeer het zo opnieuw.",
    ),
    "error.details": ("Details", "Details"),
    "form.has_errors": (
        "Some fields need correcting; see the messages beside them.",
        "Enkele velden moeten worden verbeterd; zie de meldingen ernaast.",
    ),
    "form.choose": ("Choose…", "Kies…"),
    "invalid.reason": ("Choose one of the reasons.", "Kies een van de grondslagen."),
    "invalid.reference": (
        "Give a case reference of 1 to 200 characters.",
        "Geef een zaakreferentie van 1 tot 200 tekens.",
    ),
    "invalid.note": (
        "A note has at most 2,000 characters.",
        "Een notitie heeft hoogstens 2.000 tekens.",
    ),
    "invalid.categories": (
        "Tick known categories only, or none for all.",
        "Vink alleen bekende categorieën aan, of geen voor alle.",
    ),
    "invalid.subject_ref": (
        "A reference has 1 to 200 characters.",
        "Een referentie heeft 1 tot 200 tekens.",
    ),
    "invalid.ref": (
        "A reference has 1 to 200 characters.",
        "Een referentie heeft 1 tot 200 tekens.",
    ),
    "invalid.release_reason": (
        "Give a reason of 1 to 1,000 characters.",
        "Geef een reden van 1 tot 1.000 tekens.",
    ),
    "invalid.restriction_reason": (
        "Give a reason of 1 to 1,000 characters.",
        "Geef een reden van 1 tot 1.000 tekens.",
    ),
    "invalid.ip": (
        "An IP address or a CIDR, such as 203.0.113.0/24.",
        "Een IP-adres of een CIDR, zoals 203.0.113.0/24.",
    ),
    "invalid.status": (
        "An HTTP status between 100 and 599.",
        "Een HTTP-status tussen 100 en 599.",
    ),
    "invalid.expires_at": (
        "A date and time in the future (UTC) such as 2025-03-01 14:30, or empty for none.",
        "Een datum en tijd in de toekomst (UTC) zoals 01-03-2025 14:30, of leeg voor geen.",
    ),
    "invalid.since": (
        "A date and time (UTC) such as 2025-03-01 14:30.",
        "Een datum en tijd (UTC) zoals 01-03-2025 14:30.",
    ),
    "invalid.until": (
        "A date and time (UTC) such as 2025-03-01 14:30.",
        "Een datum en tijd (UTC) zoals 01-03-2025 14:30.",
    ),
    "invalid.recipient": (
        "Name the recipient in 1 to 200 characters.",
        "Noem de ontvanger in 1 tot 200 tekens.",
    ),
    "invalid.legal_basis": (
        "Give the legal basis in 1 to 200 characters.",
        "Geef de rechtsgrond in 1 tot 200 tekens.",
    ),
    "invalid.disclosure_reference": (
        "Give a case reference of 1 to 200 characters.",
        "Geef een zaakreferentie van 1 tot 200 tekens.",
    ),
    "invalid.disclosure_categories": (
        "Tick the categories of data that were handed over.",
        "Vink de categorieën gegevens aan die zijn verstrekt.",
    ),
    "invalid.disclosure_subject_ref": (
        "A reference has 1 to 200 characters, and must be the hold's subject.",
        "Een referentie heeft 1 tot 200 tekens en moet de betrokkene van de bewaarplicht zijn.",
    ),
    "invalid.description": (
        "At most 2,000 characters, and only for a subject whose data the vault holds: it is "
        "sealed under the subject's keys.",
        "Hoogstens 2.000 tekens, en alleen voor een betrokkene van wie de kluis gegevens "
        "heeft: de omschrijving wordt versleuteld met de sleutels van de betrokkene.",
    ),
    "invalid.disclosed_at": (
        "When the data was handed over (UTC, not in the future), such as 2025-03-01 14:30.",
        "Wanneer de gegevens zijn verstrekt (UTC, niet in de toekomst), zoals 01-03-2025 14:30.",
    ),
    "invalid.withhold_until": (
        "Empty, or a date and time (UTC) after the disclosure, such as 2025-03-01 14:30.",
        "Leeg, of een datum en tijd (UTC) na de verstrekking, zoals 01-03-2025 14:30.",
    ),
    "date.hint": ("e.g. 2025-03-01 14:30", "bijv. 01-03-2025 14:30"),
    "action.filter": ("Filter", "Filteren"),
    "action.search": ("Search", "Zoeken"),
    "action.clear": ("Clear", "Wissen"),
    "action.next_page": ("Older →", "Ouder →"),
    "field.subject_ref": ("Subject reference", "Referentie van de betrokkene"),
    "field.categories": ("Categories", "Categorieën"),
    "field.category": ("Category", "Categorie"),
    "field.reason": ("Reason", "Grondslag"),
    "field.reference": ("Case reference", "Zaakreferentie"),
    "field.note": ("Note", "Notitie"),
    "field.expires_at": ("Expires at (UTC)", "Verloopt op (UTC)"),
    "field.recipient": ("Recipient", "Ontvanger"),
    "field.legal_basis": ("Legal basis", "Rechtsgrond"),
    "field.description": ("Description", "Omschrijving"),
    "field.disclosed_at": ("Disclosed at (UTC)", "Verstrekt op (UTC)"),
    "field.withhold_until": (
        "Withhold from the subject until (UTC)",
        "Niet aan de betrokkene tonen tot (UTC)",
    ),
    "dashboard.title": ("Dashboard", "Overzicht"),
    "dashboard.open_erasures": ("Open erasures", "Openstaande verwijderingen"),
    "dashboard.no_open_erasures": ("No open erasures.", "Geen openstaande verwijderingen."),
    "dashboard.active_holds": ("Legal holds", "Bewaarplichten"),
    "dashboard.active": ("Active", "Actief"),
    "dashboard.expiring_7d": ("Expiring within 7 days", "Verloopt binnen 7 dagen"),
    "dashboard.per_category": ("Per category", "Per categorie"),
    "dashboard.holds_covering": ("Active holds", "Actieve bewaarplichten"),
    "dashboard.kept_by_hold": ("Kept by a hold", "Bewaard door bewaarplicht"),
    "dashboard.kept_by_retention": ("Kept by retention", "Bewaard door bewaartermijn"),
    "dashboard.nothing_held": ("Nothing is held.", "Er wordt niets bewaard."),
    "dashboard.nothing_kept": ("No erasure keeps any data.", "Geen verwijdering bewaart gegevens."),
    "dashboard.nothing_visible": (
        "This key's scopes show neither legal holds nor erasures. Sign in with a compliance "
        "key to see them (or an erasure key for the erasures).",
        "De scopes van deze sleutel tonen geen bewaarplichten en geen verwijderingen. Meld u "
        "aan met een compliance-sleutel om ze te zien (of een erasure-sleutel voor de "
        "verwijderingen).",
    ),
    "status.scheduled": ("scheduled", "gepland"),
    "status.in_progress": ("in progress", "bezig"),
    "status.completed": ("completed", "voltooid"),
    "status.held": ("held", "deels bewaard"),
    "status.cancelled": ("cancelled", "geannuleerd"),
    "holds.all_reasons": ("every reason", "alle gronden"),
    "reason.billing": ("billing", "facturering"),
    "reason.fraud_investigation": ("fraud investigation", "fraudeonderzoek"),
    "reason.litigation": ("litigation", "rechtszaak"),
    "reason.law_enforcement": ("law enforcement", "opsporing"),
    "reason.regulatory": ("regulatory", "toezichthouder"),
    "holds.title": ("Legal holds", "Bewaarplichten"),
    "holds.place": ("Place a hold", "Bewaarplicht opleggen"),
    "holds.show": ("Show", "Toon"),
    "holds.active_only": ("active holds", "actieve bewaarplichten"),
    "holds.all": ("all holds", "alle bewaarplichten"),
    "holds.for_subject": ("for subject", "voor betrokkene"),
    "holds.none": ("No holds.", "Geen bewaarplichten."),
    "hold.title": ("Hold", "Bewaarplicht"),
    "hold.placed": ("The hold is placed.", "De bewaarplicht is opgelegd."),
    "hold.typed_ref_hint": (
        "(as you typed it; shown only now: the vault keeps only its keyed hash)",
        "(zoals u hem typte; alleen nu getoond: de kluis bewaart alleen de sleutelhash)",
    ),
    "disclosures.under_hold": (
        "Disclosures made under this hold",
        "Verstrekkingen onder deze bewaarplicht",
    ),
    "disclosures.of_subject": (
        "Disclosures of this subject's data",
        "Verstrekkingen van gegevens van deze betrokkene",
    ),
    "disclosures.none": ("No disclosures recorded.", "Geen verstrekkingen vastgelegd."),
    "disclosures.more": (
        "Only the newest {count} are shown; GET /v1/disclosures lists them all.",
        "Alleen de nieuwste {count} worden getoond; GET /v1/disclosures geeft ze allemaal.",
    ),
    "disclosures.record": ("Record a disclosure", "Verstrekking vastleggen"),
    "disclosures.record_hint": (
        "Each time data is handed to a third party (a court, the police, a tax authority) "
        "on the request behind this hold. An entry cannot be changed or removed afterwards, "
        "and outlives the subject's erasure.",
        "Telkens wanneer gegevens aan een derde worden verstrekt (een rechtbank, de politie, "
        "de Belastingdienst) op het verzoek achter deze bewaarplicht. Een vastgelegde "
        "verstrekking kan niet worden gewijzigd of verwijderd en blijft bestaan na het "
        "wissen van de betrokkene.",
    ),
    "disclosures.recorded": ("The disclosure is recorded.", "De verstrekking is vastgelegd."),
    "disclosures.subject_hint": (
        "This hold covers the whole tenant: name the subject whose data was handed over, or "
        "leave empty for data about no one in particular.",
        "Deze bewaarplicht geldt voor de hele tenant: noem de betrokkene van wie gegevens "
        "zijn verstrekt, of laat leeg voor gegevens over niemand in het bijzonder.",
    ),
    "disclosures.categories_hint": (
        "The categories of data that were handed over.",
        "De categorieën gegevens die zijn verstrekt.",
    ),
    "disclosures.description_hint": (
        "What was handed over. Sealed under the subject's keys: erased with the subject.",
        "Wat er is verstrekt. Versleuteld met de sleutels van de betrokkene: wordt met de "
        "betrokkene gewist.",
    ),
    "disclosures.withhold_hint": (
        "Empty: the subject sees the disclosure in their export at once. A date: not before "
        "then (while an investigation must stay secret).",
        "Leeg: de betrokkene ziet de verstrekking meteen in de export. Een datum: pas vanaf "
        "dan (zolang een onderzoek geheim moet blijven).",
    ),
    "disclosures.when": ("Disclosed", "Verstrekt"),
    "disclosures.subject": ("Subject", "Betrokkene"),
    "disclosures.hold": ("Hold", "Bewaarplicht"),
    "disclosures.shown_from": ("Shown to the subject", "Zichtbaar voor de betrokkene"),
    "disclosures.shown_now": ("now", "nu"),
    "disclosures.description_erased": ("erased with the subject", "gewist met de betrokkene"),
    "hold.scope": ("Scope", "Bereik"),
    "hold.scope_tenant": ("whole tenant", "hele tenant"),
    "hold.scope_subject": ("one subject", "één betrokkene"),
    "hold.all_categories": ("all categories", "alle categorieën"),
    "hold.placed_at": ("Placed", "Opgelegd"),
    "hold.expires_at": ("Expires", "Verloopt"),
    "hold.released_at": ("Released", "Opgeheven"),
    "hold.state": ("State", "Stand"),
    "hold.active": ("active", "actief"),
    "hold.released": ("released", "opgeheven"),
    "hold.expired": ("expired", "verlopen"),
    "hold.expiring_soon": ("expires within 7 days", "verloopt binnen 7 dagen"),
    "hold.subject_hint": (
        "Leave empty to hold the whole tenant. A subject not yet seen can be held too; "
        "the vault keeps only a keyed hash of the reference.",
        "Leeg laten voor de hele tenant. Ook een nog onbekende betrokkene kan worden "
        "vastgehouden; de kluis bewaart alleen een sleutelhash van de referentie.",
    ),
    "hold.categories_hint": ("None ticked: all categories.", "Niets aangevinkt: alle categorieën."),
    "hold.note_hint": (
        "Case numbers and ticket ids only: never a name, e-mail or other personal data.",
        "Alleen zaaknummers en ticketnummers: nooit een naam, e-mailadres of andere "
        "persoonsgegevens.",
    ),
    "hold.awaiting_second": (
        "Release requested by {key} at {at}, awaiting a second compliance officer.",
        "Opheffing aangevraagd door {key} op {at}, wacht op een tweede compliance officer.",
    ),
    "hold.impact": ("Impact of a release", "Gevolg van opheffen"),
    "hold.impact_keys": ("Keys shredded at once", "Sleutels die direct vernietigd worden"),
    "hold.impact_erasures": ("Erasures that proceed", "Verwijderingen die doorgaan"),
    "hold.impact_none": (
        "Releasing this hold shreds nothing now.",
        "Opheffen van deze bewaarplicht vernietigt nu niets.",
    ),
    "hold.extend": ("Extend or annotate", "Verlengen of aantekenen"),
    "hold.save": ("Save", "Opslaan"),
    "hold.release": ("Release", "Opheffen"),
    "hold.release_reason": ("Reason for the release", "Reden van opheffen"),
    "hold.request_release": ("Request release", "Opheffing aanvragen"),
    "hold.confirm_release": ("Confirm release", "Opheffing bevestigen"),
    "hold.two_key_hint": (
        "Releasing a litigation or law-enforcement hold takes two different compliance "
        "keys: the first requests, a second confirms.",
        "Voor het opheffen van een bewaarplicht wegens rechtszaak of opsporing zijn twee "
        "verschillende compliance-sleutels nodig: de eerste vraagt aan, de tweede bevestigt.",
    ),
    "hold.journal": ("Journal", "Logboek"),
    "journal.when": ("When", "Wanneer"),
    "journal.what": ("What", "Wat"),
    "journal.who": ("Who (key)", "Wie (sleutel)"),
    "journal.from": ("From (IP)", "Vanaf (IP)"),
    "journal.why": ("Why", "Waarom"),
    "journal.system": ("the vault", "de kluis"),
    "event.placed": ("placed", "opgelegd"),
    "event.extended": ("extended", "verlengd"),
    "event.annotated": ("annotated", "aangetekend"),
    "event.release_requested": ("release requested", "opheffing aangevraagd"),
    "event.release_withdrawn": ("release request withdrawn", "opheffingsverzoek ingetrokken"),
    "event.released": ("released", "opgeheven"),
    "event.expired": ("expired", "verlopen"),
    "erasures.title": ("Erasures", "Verwijderingen"),
    "erasures.any_status": ("any status", "elke status"),
    "erasures.none": ("No erasures.", "Geen verwijderingen."),
    "erasure.title": ("Erasure", "Verwijdering"),
    "erasure.id": ("Erasure", "Verwijdering"),
    "erasure.status": ("Status", "Status"),
    "erasure.subject": ("Subject (pseudonym)", "Betrokkene (pseudoniem)"),
    "erasure.requested_at": ("Requested", "Aangevraagd"),
    "erasure.not_before": ("Not before", "Niet voor"),
    "erasure.due_at": ("Due", "Uiterlijk"),
    "erasure.completed_at": ("Completed", "Voltooid"),
    "erasure.overdue": ("overdue", "te laat"),
    "erasure.rate_braked": ("held back by the rate brake", "tegengehouden door de rem"),
    "erasure.shredded": ("Shredded", "Vernietigd"),
    "erasure.nothing_shredded": ("Nothing shredded (yet).", "(Nog) niets vernietigd."),
    "erasure.key_id": ("Key", "Sleutel"),
    "erasure.destroyed_at": ("Destroyed", "Vernietigd op"),
    "erasure.kept": ("Kept", "Bewaard"),
    "erasure.nothing_kept": ("Nothing is kept.", "Er wordt niets bewaard."),
    "erasure.kept_by_hold": ("{category}: kept by hold", "{category}: bewaard door bewaarplicht"),
    "erasure.kept_until": (
        "{category}: kept for statutory retention until {until}",
        "{category}: bewaard voor de wettelijke bewaartermijn tot {until}",
    ),
    "erasure.receipt": ("Receipt", "Bewijs van verwijdering"),
    "erasure.no_receipt": (
        "No receipt yet: it is issued once the shred is complete.",
        "Nog geen bewijs: dat volgt zodra de vernietiging voltooid is.",
    ),
    "erasure.receipt_verifies": (
        "The signature verifies against the published key {key}.",
        "De handtekening klopt met de gepubliceerde sleutel {key}.",
    ),
    "erasure.receipt_fails": (
        "The signature does NOT verify: {problem}",
        "De handtekening klopt NIET: {problem}",
    ),
    "erasure.receipt_final": ("Final receipt", "Definitief bewijs"),
    "erasure.receipt_interim": (
        "Interim receipt (some categories are still kept)",
        "Voorlopig bewijs (sommige categorieën worden nog bewaard)",
    ),
    "erasure.backups_after": (
        "backups unreadable after {at}",
        "back-ups onleesbaar na {at}",
    ),
    "erasure.download_receipt": (
        "Download the signed receipt (JSON)",
        "Download het ondertekende bewijs (JSON)",
    ),
    "subjects.title": ("Subjects", "Betrokkenen"),
    "subjects.hint": (
        "The reference is sent in the form, not the address bar, so it stays out of your "
        "browser history.",
        "De referentie gaat mee in het formulier, niet in de adresbalk, zodat ze niet in "
        "uw browsergeschiedenis komt.",
    ),
    "subjects.look_up": ("Look up", "Opzoeken"),
    "subject.title": ("Subject", "Betrokkene"),
    "subject.pseudonym": ("Pseudonym (keyed hash)", "Pseudoniem (sleutelhash)"),
    "subject.status": ("Status", "Status"),
    "subject.status_active": ("active", "actief"),
    "subject.status_restricted": ("restricted", "beperkt"),
    "subject.status_erased": ("erased", "gewist"),
    "subject.unknown": ("no data stored for this reference", "geen gegevens voor deze referentie"),
    "subject.created_at": ("First seen", "Eerst gezien"),
    "subject.artefacts": ("Artefacts", "Bestanden"),
    "subject.records": ("Records", "Records"),
    "subject.bytes": ("Bytes", "Bytes"),
    "subject.no_data": ("No data stored.", "Geen gegevens opgeslagen."),
    "subject.holds": ("Holds covering this subject", "Bewaarplichten voor deze betrokkene"),
    "subject.erasures": ("Erasures", "Verwijderingen"),
    "subject.restriction": ("Restriction of processing", "Beperking van de verwerking"),
    "subject.restrict": ("Restrict processing", "Verwerking beperken"),
    "subject.restrict_reason": ("Reason", "Reden"),
    "subject.lift": ("Lift the restriction", "Beperking opheffen"),
    "subject.restricted_now": ("Processing is restricted.", "De verwerking is beperkt."),
    "subject.lifted_now": ("The restriction is lifted.", "De beperking is opgeheven."),
    "subject.export": ("Export", "Export"),
    "subject.download_export": ("Download everything (ZIP)", "Alles downloaden (ZIP)"),
    "access.title": ("Access log", "Toegangslog"),
    "access.chain": ("Chain verification", "Controle van de keten"),
    "access.chain_ok": (
        "Last verification {at}: all {rows} rows and {disclosures} disclosures intact.",
        "Laatste controle {at}: alle {rows} regels en {disclosures} verstrekkingen intact.",
    ),
    "access.chain_bad_disclosure": (
        "Last verification {at}: disclosure {seq} fails: {problem}",
        "Laatste controle {at}: verstrekking {seq} klopt niet: {problem}",
    ),
    "access.chain_bad": (
        "Last verification {at}: row {seq} fails: {problem}",
        "Laatste controle {at}: regel {seq} klopt niet: {problem}",
    ),
    "access.chain_bad_anchors": (
        "Last verification {at}: the anchors in the blob store fail: {problem}",
        "Laatste controle {at}: de ankers in de objectopslag kloppen niet: {problem}",
    ),
    "access.chain_never": (
        "The chain has not been verified from the console yet.",
        "De keten is nog niet vanuit de console gecontroleerd.",
    ),
    "access.verify_now": ("Verify the chain now", "Keten nu controleren"),
    "access.search": ("Search", "Zoeken"),
    "access.api_key": ("API key", "API-sleutel"),
    "access.api_key_hint": ("prefix or id", "prefix of id"),
    "access.ip": ("IP address or CIDR", "IP-adres of CIDR"),
    "access.ip_hint": ("e.g. 203.0.113.0/24", "bijv. 203.0.113.0/24"),
    "access.status": ("HTTP status", "HTTP-status"),
    "access.since": ("From (UTC)", "Vanaf (UTC)"),
    "access.until": ("Until (UTC)", "Tot (UTC)"),
    "access.subject_filtered": ("filtered on pseudonym {hash}…", "gefilterd op pseudoniem {hash}…"),
    "access.active_filters": ("Current search", "Huidige zoekopdracht"),
    "access.csv": ("Download this search as CSV", "Deze zoekopdracht downloaden als CSV"),
    "access.results": ("Requests, newest first", "Verzoeken, nieuwste eerst"),
    "access.at": ("Time", "Tijd"),
    "access.request": ("Request", "Verzoek"),
    "access.none": ("No requests match.", "Geen verzoeken gevonden."),
}


class Catalogue:
    def __init__(self, language: str) -> None:
        self._index = LANGUAGES.index(language) if language in LANGUAGES else 0

    def text(self, name: str, /, **values: Any) -> str:
        entry = CATALOGUE.get(name)
        if entry is None:
            # A missing string shows its key rather than failing the page; a test checks
            # that every key the templates use is in the catalogue.
            return name
        return entry[self._index].format(**values) if values else entry[self._index]


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    if cookie in LANGUAGES:
        return cookie
    if not accept_language or len(accept_language) > MAX_ACCEPT_LANGUAGE:
        return DEFAULT_LANGUAGE
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE
