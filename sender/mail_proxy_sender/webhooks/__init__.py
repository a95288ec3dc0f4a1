# SPDX-License-Identifier: Apache-2.0
"""Signed per-event webhooks (Standard Webhooks): message shape, signing, delivery loop."""
