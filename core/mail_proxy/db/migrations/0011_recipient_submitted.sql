-- Per-recipient outcomes show the address as the app submitted it (issue 10; SPEC section 13).
-- `address` stays the normalised envelope address (dedupe key); `submitted` is the recipient as
-- written in the message's to/cc/bcc (`Ann <Ann@Bücher.example>`), shown in reports and in
-- GET /messages. NULL on rows written before this column: the normalised address is shown.
ALTER TABLE message_recipients ADD COLUMN submitted text;
