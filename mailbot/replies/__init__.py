"""Replies: their models, rendering from templates, the correction workbook."""
