"""PEC receipts as Italian certified-mail providers send them (DPCM 2/11/2005 layout)."""

from __future__ import annotations


def receipt(
    kind: str | None,
    *,
    subject: str | None = None,
    reference: str = "<orig@example.it>",
    recipient: str = "dest@pec.example.it",
    error: str | None = None,
    body: str = "",
    mail_id: str = "",
) -> bytes:
    """A receipt with `X-Ricevuta: kind` (None: no header, the subject decides)."""
    titles = {
        "accettazione": "ACCETTAZIONE",
        "presa-in-carico": "PRESA IN CARICO",
        "avvenuta-consegna": "POSTA CERTIFICATA: AVVENUTA CONSEGNA",
        "consegna": "AVVENUTA CONSEGNA",
        "mancata-consegna": "MANCATA CONSEGNA",
        "errore-consegna": "ERRORE CONSEGNA",
        "non-accettazione": "NON ACCETTAZIONE",
    }
    subject = subject or f"{titles.get(kind or '', 'AVVISO')}: Fattura 1"
    headers = [
        "From: posta-certificata@pec.provider.it",
        "To: sender@pec.example.it",
        f"Subject: {subject}",
        "Date: Sun, 29 Nov 2026 03:40:00 +0000",
        "Message-ID: <receipt-1@pec.provider.it>",
        f"X-Riferimento-Message-ID: {reference}",
        f"X-Destinatario: {recipient}",
        "X-Trasporto: posta-certificata",
    ]
    if kind:
        headers.append(f"X-Ricevuta: {kind}")
    if error:
        headers.append(f"X-Errore: {error}")
    text = body or f"Ricevuta di {kind or 'posta'} del messaggio Fattura 1."
    if mail_id:
        text += f"\nX-Genro-Mail-ID: {mail_id}"
    return ("\r\n".join(headers) + "\r\n\r\n" + text + "\r\n").encode()
