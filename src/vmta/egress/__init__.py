"""How an outbound connection leaves: bind a source IP, NAT, SOCKS5 or HTTP CONNECT."""
