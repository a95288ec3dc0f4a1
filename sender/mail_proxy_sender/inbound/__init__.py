# SPDX-License-Identifier: BUSL-1.1
"""Inbound mail: IMAP pollers for bounce mailboxes and PEC accounts, and what they record."""
