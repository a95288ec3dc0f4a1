# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes operator: MailProxyInstance, Tenant and SmtpAccount resources to Postgres rows."""
