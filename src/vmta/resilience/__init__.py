"""Keeping a node's long-running work alive through faults: supervised tasks, and outage
logging that reports the first failure in full and the rest on one line."""
