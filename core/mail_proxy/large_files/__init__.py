# SPDX-License-Identifier: BUSL-1.1
"""Large-file offload (reference section 6.6): policy, storage, signed download links, footer."""
