"""vmta: an outbound mail transfer agent with GreenArrow- and MailerQ-compatible APIs."""

__version__ = "0.1.0"
