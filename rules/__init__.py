"""Campaign rules files, shipped in the package as ``mailbot.campaign_rules`` (see mailbot/bundled.py)."""
