"""MailerQ REST API v1 compatible endpoints under /v1 (API.md §3)."""
