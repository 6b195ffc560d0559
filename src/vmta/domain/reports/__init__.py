"""What an outcome tells and what comes back: events in the vendors' words, bounce
classes, DSNs, VERP and bad addresses."""
