"""Sample mails for ``mailbot demo`` (synthetic people)."""
