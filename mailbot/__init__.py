"""mailbot: reads Annex 3 registration forms from a mailbox and answers each sender."""

__version__ = "0.1.0"
