"""Keeping a node's long-running work alive through faults: supervised tasks, outage
logging that reports the first failure in full and the rest on one line, and the state
of a link to a service vmta depends on."""
