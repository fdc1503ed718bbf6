"""Mail in and out: sources (IMAP, Maildir), the MIME walk, the gate, SMTP."""
