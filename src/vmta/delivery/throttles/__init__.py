"""How fast an egress path may go: connection slots and message pacing in this process, in
files shared by the host's processes, or in Redis for a cluster; and Dynamic Delivery's
backoff."""
