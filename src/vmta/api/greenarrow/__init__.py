"""GreenArrow Engine API v3 compatible endpoints under /ga/api/v3/eng (contract §2)."""
