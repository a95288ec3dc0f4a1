"""The sender: leases ready messages from Postgres, delivers them over SMTP, reports back."""
