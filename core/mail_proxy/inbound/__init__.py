# SPDX-License-Identifier: BUSL-1.1
"""Reading mail that comes back: DSNs (bounces) and PEC receipts. Pure parsing, no I/O."""
