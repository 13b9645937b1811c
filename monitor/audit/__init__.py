"""The fleet audit: every mailbox's latest state at once, as a summary, CSV and HTML."""
