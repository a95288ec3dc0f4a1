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
    ],
)
def test_receipt_kinds_by_header(header: str, receipt: str, event: str) -> None:
    parsed = parse_pec_receipt(pec.receipt(header, reference="<1a.00@x.it>", error="Casella piena"))
    assert parsed is not None
    assert (parsed.receipt_type, parsed.event) == (receipt, event)
    assert parsed.recipient == "dest@pec.example.it"
    assert parsed.reference_message_id == "<1a.00@x.it>"
    assert parsed.timestamp == 1795923600  # Date: Sun, 29 Nov 2026 03:40:00 +0000
    assert parsed.error_reason == ("Casella piena" if event == "pec_error" else None)


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
    ],
)
def test_receipt_kinds_by_subject(subject: str, receipt: str) -> None:
    parsed = parse_pec_receipt(pec.receipt(None, subject=subject))
    assert parsed is not None
    assert parsed.receipt_type == receipt


def test_error_reason_from_the_body_and_other_mail_ignored() -> None:
    parsed = parse_pec_receipt(pec.receipt("mancata-consegna", body="Errore: utente sconosciuto"))
    assert parsed is not None
    assert parsed.error_reason == "utente sconosciuto"
    assert parse_pec_receipt(pec.receipt(None, subject="Re: Fattura 1")) is None
    assert parse_pec_receipt(b"garbage\x00\xff") is None
