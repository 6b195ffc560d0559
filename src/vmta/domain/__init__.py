"""Pure rules of vmta: standard library only, no I/O, no framework types."""
