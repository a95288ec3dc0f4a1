# SPDX-License-Identifier: Apache-2.0
"""The sender: leases ready messages from Postgres, delivers them over SMTP, reports back."""
