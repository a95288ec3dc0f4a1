# SPDX-License-Identifier: Apache-2.0
"""Delivery: lease ready work, send it over SMTP, record each outcome, retry with back-off."""
