"""Which path a recipient takes: routing rules, relay servers, external MTAs' routes,
egress paths, and what holds a recipient back (pauses, forced errors, suppressions, loops)."""
