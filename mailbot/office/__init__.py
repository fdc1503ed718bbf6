"""The office side: what staff receive and do (the digest)."""
