"""DKIM signing (RFC 6376, RFC 8463): key material, the signer, the keyring of stored keys
and the choice of keys for a message."""
