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
        "preavviso-errore-consegna": "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO",
        "rilevazione-virus": "PROBLEMA DI SICUREZZA",
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


def receipt_with_daticert(
    tipo: str,
    *,
    subject: str = "AVVISO: Fattura 1",
    reference: str = "<orig@example.it>",
    recipient: str = "dest@pec.example.it",
    errore_esteso: str | None = None,
) -> bytes:
    """A receipt known only by its `daticert.xml` (no X-Ricevuta), laid out as the rules'
    section 4 describes: multipart/mixed with the readable text, then the certification
    data as an XML attachment."""
    error = f"<errore-esteso>{errore_esteso}</errore-esteso>" if errore_esteso else ""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        f'<postacert tipo="{tipo}" errore="{"altro" if errore_esteso else "nessuno"}">'
        "<intestazione><mittente>sender@pec.example.it</mittente>"
        f'<destinatari tipo="certificato">{recipient}</destinatari>'
        "<oggetto>Fattura 1</oggetto></intestazione>"
        f"<dati><gestore-emittente>Provider PEC</gestore-emittente>"
        f"<msgid>{reference.replace('<', '&lt;').replace('>', '&gt;')}</msgid>"
        f"{error}</dati></postacert>"
    )
    return (
        "From: posta-certificata@pec.provider.it\r\n"
        "To: sender@pec.example.it\r\n"
        f"Subject: {subject}\r\n"
        "Date: Sun, 29 Nov 2026 03:40:00 +0000\r\n"
        "Message-ID: <receipt-2@pec.provider.it>\r\n"
        f"X-Riferimento-Message-ID: {reference}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Ricevuta del messaggio Fattura 1.\r\n"
        "--b1\r\nContent-Type: application/xml; name=daticert.xml\r\n"
        "Content-Disposition: inline; filename=daticert.xml\r\n\r\n"
        f"{xml}\r\n--b1--\r\n"
    ).encode()


def certified_mail(reference: str = "<orig@example.it>") -> bytes:
    """A transport envelope (X-Trasporto: posta-certificata): certified mail *to* the
    mailbox, e.g. a reply; not a receipt about anything we sent."""
    return (
        "From: posta-certificata@pec.provider.it\r\n"
        "To: sender@pec.example.it\r\n"
        "Subject: POSTA CERTIFICATA: Re: Fattura 1\r\n"
        "Date: Sun, 29 Nov 2026 03:40:00 +0000\r\n"
        "Message-ID: <envelope-1@pec.provider.it>\r\n"
        f"In-Reply-To: {reference}\r\n"
        "X-Trasporto: posta-certificata\r\n"
        "\r\nMessaggio di posta certificata.\r\n"
    ).encode()
