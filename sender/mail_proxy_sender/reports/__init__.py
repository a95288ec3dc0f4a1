# SPDX-License-Identifier: Apache-2.0
"""Delivery reports to tenants' apps over the v0.6 sync protocol."""
