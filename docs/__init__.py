"""docs/SCHEMA.md ships in the package as mailbot.schema_doc: ``mailbot audit serve`` describes
the tables and views from it (see mailbot/bundled.py)."""
