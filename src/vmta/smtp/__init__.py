"""SMTP at both edges: the injection listener and the outbound client."""
