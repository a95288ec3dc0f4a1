# SPDX-License-Identifier: Apache-2.0
"""mail-proxy core: settings, errors, encryption, storage and domain rules shared by all.

This package imports no web, SMTP or operator framework; the components (`mail_proxy_api`,
`mail_proxy_sender`, `mail_proxy_operator`) build on it and never on each other.
"""

__version__ = "0.1.0"
