# SPDX-License-Identifier: Apache-2.0
"""The `mail-proxy` command: the composition root that wires core and components together."""
