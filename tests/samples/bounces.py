"""Bounce messages in the formats real MTAs produce, written for these tests after RFC 3464 and
what Postfix, Exim, qmail, Exchange, Gmail, Yahoo and old sendmail send. `original` is the header
block of the message that bounced (what the MTA quotes back)."""

from __future__ import annotations


def original_headers(
    *,
    mail_id: str = "m1",
    token: str = "",
    message_id: str = "<orig@example.org>",
    to: str = "gone@example.com",
) -> str:
    lines = [
        "From: Sender <sender@example.org>",
        f"To: {to}",
        "Subject: Invoice 42",
        f"Message-ID: {message_id}",
        f"X-Genro-Mail-ID: {mail_id}",
    ]
    if token:
        lines.append(f"X-Genro-Mail-Token: {token}")
    return "\r\n".join(lines) + "\r\n"


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def postfix(
    original: str, *, rcpt: str = "gone@example.com", to: str = "bounces@example.net"
) -> bytes:
    return _crlf(f"""Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
Message-ID: <20261129.ABC@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{rcpt}>: host mx.example.com[192.0.2.1] said: 550 5.1.1
    <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table

--B1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4F00
Arrival-Date: Sun, 29 Nov 2026 10:00:00 +0000 (UTC)

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown

--B1
Content-Description: Undelivered Message
Content-Type: message/rfc822

{original}
Hello.

--B1--
""")


def gmail(original: str, *, rcpt: str = "gone@example.com") -> bytes:
    return _crlf(f"""From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: sender@example.org
Subject: Delivery Status Notification (Failure)
Auto-Submitted: auto-replied
Message-ID: <gmail-dsn-1@mx.google.com>
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000g"; report-type=delivery-status

--000g
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {rcpt} because the address couldn't be found.

--000g
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Arrival-Date: Sun, 29 Nov 2026 10:00:00 -0800

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com. (192.0.2.1, the server for the domain example.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.
Last-Attempt-Date: Sun, 29 Nov 2026 10:00:01 -0800

--000g
Content-Type: text/rfc822-headers

{original}
--000g--
""")


def exchange(original: str, *, rcpt: str = "gone@example.com") -> bytes:
    return _crlf(f"""From: Microsoft Outlook <postmaster@example.onmicrosoft.com>
To: <sender@example.org>
Subject: Undeliverable: Invoice 42
Content-Language: en-US
Message-ID: <exchange-ndr@example.onmicrosoft.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="_ex_"

--_ex_
Content-Type: text/plain; charset="us-ascii"

Delivery has failed to these recipients or groups:

{rcpt}
The email address you entered couldn't be found.

--_ex_
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB0001.eurprd01.prod.outlook.com
Received-From-MTA: dns;example.org
Arrival-Date: Sun, 29 Nov 2026 10:00:00 +0000

Final-Recipient: rfc822;{rcpt}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP
 address lookup

--_ex_
Content-Type: message/rfc822

{original}
Hello.

--_ex_--
""")


def delayed(original: str, *, rcpt: str = "slow@example.com") -> bytes:
    return _crlf(f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: sender@example.org
Subject: Delayed Mail (still being retried)
Message-ID: <delay-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="D1"

--D1
Content-Type: text/plain

This is the mail system. Your message is delayed.

--D1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {rcpt}
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.com[192.0.2.1]:25: Connection timed out
Will-Retry-Until: Fri, 4 Dec 2026 10:00:00 +0000

--D1
Content-Type: text/rfc822-headers

{original}
--D1--
""")


def soft_failed(original: str, *, rcpt: str = "full@example.com") -> bytes:
    return _crlf(f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: sender@example.org
Subject: Undelivered Mail Returned to Sender
Message-ID: <soft-1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="S1"

--S1
Content-Type: text/plain

Mailbox full.

--S1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--S1
Content-Type: text/rfc822-headers

{original}
--S1--
""")


def exim(original: str, *, rcpt: str = "gone@example.com") -> bytes:
    return _crlf(f"""Return-path: <>
From: Mail Delivery System <Mailer-Daemon@mail.example.net>
To: sender@example.org
Subject: Mail delivery failed: returning message to sender
Message-Id: <E1abc-0001@mail.example.net>
X-Failed-Recipients: {rcpt}
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {rcpt}
    host mx.example.com [192.0.2.1]
    SMTP error from remote mail server after RCPT TO:<{rcpt}>:
    550 5.1.1 No such user here

------ This is a copy of the message, including all the headers. ------

{original}
Hello.
""")


def qmail(original: str, *, rcpt: str = "gone@example.com") -> bytes:
    return _crlf(f"""From: MAILER-DAEMON@qmail.example.net
To: sender@example.org
Subject: failure notice
Message-ID: <qmail-1@qmail.example.net>

Hi. This is the qmail-send program at qmail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{rcpt}>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <{rcpt}>... User unknown
Giving up on 192.0.2.1.

--- Below this line is a copy of the message.

{original}
Hello.
""")


def yahoo(original: str, *, rcpt: str = "gone@example.com") -> bytes:
    return _crlf(f"""From: MAILER-DAEMON@yahoo.com
To: sender@example.org
Subject: Failure Notice
Message-ID: <yahoo-1@yahoo.com>

Sorry, we were unable to deliver your message to the following address.

<{rcpt}>:
554: delivery error: dd This user doesn't have a yahoo.com account ({rcpt}) [0] - mta1.yahoo.com

--- Below this line is a copy of the message.

{original}
Hello.
""")


def sendmail_old(original: str, *, rcpt: str = "gone@example.com") -> bytes:
    return _crlf(f"""From: Mail Delivery Subsystem <MAILER-DAEMON@old.example.net>
To: <sender@example.org>
Subject: Returned mail: User unknown
Message-Id: <199901011200.AAA0001@old.example.net>

The original message was received at Fri, 1 Jan 1999 12:00:00 GMT
from localhost [127.0.0.1]

   ----- The following addresses had permanent fatal errors -----
<{rcpt}>

   ----- Transcript of session follows -----
... while talking to mx.example.com.:
>>> RCPT To:<{rcpt}>
<<< 550 <{rcpt}>... User unknown
550 <{rcpt}>... User unknown

   ----- Original message follows -----

{original}
Hello.
""")


def auto_reply() -> bytes:
    return _crlf("""From: Someone <someone@example.com>
To: sender@example.org
Subject: Out of Office: Invoice 42
Auto-Submitted: auto-replied
X-Autoreply: yes
Message-ID: <ooo-1@example.com>

I am out of the office until Monday. For urgent matters write to boss@example.com.
""")


def plain_reply() -> bytes:
    return _crlf("""From: Someone <someone@example.com>
To: sender@example.org
Subject: Re: Invoice 42
Message-ID: <re-1@example.com>

Thanks, received. Call me at 555 1234.
""")


FORMATS = {
    "postfix": postfix,
    "gmail": gmail,
    "exchange": exchange,
    "exim": exim,
    "qmail": qmail,
    "yahoo": yahoo,
    "sendmail": sendmail_old,
}
