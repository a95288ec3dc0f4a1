# SPDX-License-Identifier: Apache-2.0
"""The REST API: the documented (v0.6) contract of genro-mail-proxy, with its gaps closed."""
