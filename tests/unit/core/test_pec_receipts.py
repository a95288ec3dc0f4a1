"""Parsing PEC receipts: header first, subject prefix otherwise; the reference's mapping."""

from __future__ import annotations

import pytest

from mail_proxy.inbound.pec import parse_pec_receipt
from tests.samples import pec


@pytest.mark.parametrize(
    ("header", "receipt", "event"),
    [
        ("accettazione", "accettazione", "pec_acceptance"),
        ("presa-in-carico", "presa_in_carico", "pec_acceptance"),
        ("avvenuta-consegna", "consegna", "pec_delivery"),
        ("consegna", "consegna", "pec_delivery"),
        ("mancata-consegna", "mancata_consegna", "pec_error"),
        ("errore-consegna", "mancata_consegna", "pec_error"),
        ("non-accettazione", "non_accettazione", "pec_error"),
        ("preavviso-errore-consegna", "preavviso_mancata_consegna", "pec_delivery_warning"),
        ("rilevazione-virus", "rilevazione_virus", "pec_error"),
        ("RILEVAZIONE-VIRUS", "rilevazione_virus", "pec_error"),
    ],
)
def test_receipt_kinds_by_header(header: str, receipt: str, event: str) -> None:
    parsed = parse_pec_receipt(pec.receipt(header, reference="<1a.00@x.it>", error="Casella piena"))
    assert parsed is not None
    assert (parsed.receipt_type, parsed.event) == (receipt, event)
    assert parsed.recipient == "dest@pec.example.it"
    assert parsed.reference_message_id == "<1a.00@x.it>"
    assert parsed.timestamp == 1795923600  # Date: Sun, 29 Nov 2026 03:40:00 +0000
    failing = event in ("pec_error", "pec_delivery_warning")
    assert parsed.error_reason == ("Casella piena" if failing else None)


@pytest.mark.parametrize(
    ("subject", "receipt"),
    [
        ("ACCETTAZIONE: Fattura 1", "accettazione"),
        ("POSTA CERTIFICATA: AVVENUTA CONSEGNA: Fattura 1", "consegna"),
        ("AVVENUTA CONSEGNA: Fattura 1", "consegna"),
        ("Mancata consegna: Fattura 1", "mancata_consegna"),
        ("ERRORE CONSEGNA: Fattura 1", "mancata_consegna"),
        ("NON ACCETTAZIONE: Fattura 1", "non_accettazione"),
        ("PRESA IN CARICO: Fattura 1", "presa_in_carico"),
        # The technical rules' own subjects (DM 2/11/2005).
        ("CONSEGNA: Fattura 1", "consegna"),
        ("AVVISO DI NON ACCETTAZIONE: Fattura 1", "non_accettazione"),
        ("AVVISO DI NON ACCETTAZIONE PER VIRUS: Fattura 1", "non_accettazione"),
        ("AVVISO DI MANCATA CONSEGNA: Fattura 1", "mancata_consegna"),
        ("AVVISO DI MANCATA CONSEGNA PER VIRUS: Fattura 1", "mancata_consegna"),
        (
            "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: Fattura 1",
            "preavviso_mancata_consegna",
        ),
        ("PROBLEMA DI SICUREZZA: Fattura 1", "rilevazione_virus"),
        ("POSTA CERTIFICATA: Fattura 1", None),
        ("ANOMALIA MESSAGGIO: Fattura 1", None),
    ],
)
def test_receipt_kinds_by_subject(subject: str, receipt: str | None) -> None:
    parsed = parse_pec_receipt(pec.receipt(None, subject=subject))
    assert (parsed.receipt_type if parsed else None) == receipt


def test_every_kind_of_the_rules_has_an_event() -> None:
    """No receipt kind of the PEC rules falls through: each maps to a documented event, and
    a failure or warning always carries a reason."""
    kinds = {
        "accettazione": "pec_acceptance",
        "non-accettazione": "pec_error",
        "presa-in-carico": "pec_acceptance",
        "avvenuta-consegna": "pec_delivery",
        "errore-consegna": "pec_error",
        "preavviso-errore-consegna": "pec_delivery_warning",
        "rilevazione-virus": "pec_error",
    }
    for kind, event in kinds.items():
        for raw in (pec.receipt(kind), pec.receipt_with_daticert(kind)):
            parsed = parse_pec_receipt(raw)
            assert parsed is not None, kind
            assert parsed.event == event, kind
            assert (parsed.error_reason is not None) == (
                event in ("pec_error", "pec_delivery_warning")
            ), kind
    assert parse_pec_receipt(pec.receipt_with_daticert("posta-certificata")) is None
    assert parse_pec_receipt(pec.certified_mail()) is None


def test_daticert_supplies_the_kind_and_the_extended_error() -> None:
    parsed = parse_pec_receipt(
        pec.receipt_with_daticert(
            "errore-consegna",
            reference="<7.x@pec.example.it>",
            errore_esteso="5.1.1 - Casella &quot;dest&quot; inesistente",
        )
    )
    assert parsed is not None
    assert (parsed.receipt_type, parsed.event) == ("mancata_consegna", "pec_error")
    assert parsed.error_reason == '5.1.1 - Casella "dest" inesistente'
    assert parsed.reference_message_id == "<7.x@pec.example.it>"
    # The header wins over daticert and subject when they disagree.
    raw = pec.receipt_with_daticert("errore-consegna").replace(
        b"MIME-Version", b"X-Ricevuta: avvenuta-consegna\r\nMIME-Version"
    )
    assert parse_pec_receipt(raw).event == "pec_delivery"  # type: ignore[union-attr]


@pytest.mark.timeout(30)
def test_hostile_daticert_is_read_in_bounded_time() -> None:
    """An attacker's 'receipt' with a huge unterminated daticert: the patterns are bounded,
    so it is read (and found to be no receipt) without backtracking for ever."""
    junk = "<postacert " * 50_000 + "<errore-esteso " * 50_000
    raw = pec.receipt_with_daticert("accettazione").replace(b"<?xml", junk.encode() + b"<?xml")
    assert parse_pec_receipt(raw) is None


def test_error_reason_from_the_body_and_other_mail_ignored() -> None:
    parsed = parse_pec_receipt(pec.receipt("mancata-consegna", body="Errore: utente sconosciuto"))
    assert parsed is not None
    assert parsed.error_reason == "utente sconosciuto"
    assert parse_pec_receipt(pec.receipt(None, subject="Re: Fattura 1")) is None
    assert parse_pec_receipt(b"garbage\x00\xff") is None
