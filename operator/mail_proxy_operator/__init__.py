"""The Kubernetes operator: MailProxyInstance, Tenant and SmtpAccount resources to Postgres rows."""
