"""Mailbox fullness: quota states with hysteresis, the usage history and its forecast."""
