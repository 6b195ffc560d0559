"""The records operators configure through the APIs, and the rules their fields follow."""
