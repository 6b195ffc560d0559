"""Where a recipient's mail goes: the configuration as the engine sees it, the router
(VirtualMTA, routing rules, suppressions) and the MX resolver, down to an egress path."""
