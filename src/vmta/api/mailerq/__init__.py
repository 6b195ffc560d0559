"""MailerQ REST API v1 compatible endpoints under /v1 (contract §3)."""
