# SPDX-License-Identifier: Apache-2.0
"""Attachments: fetch by mode, cache, and send tenant credentials to the tenant only."""
