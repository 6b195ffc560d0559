"""Real peers for tests: a recording SMTP sink, SOCKS5 and HTTP CONNECT proxies, and a
raw scripted TCP server for misbehaving peers."""
