"""Reply and digest templates, shipped in the package as ``mailbot.reply_templates`` (see mailbot/bundled.py)."""
