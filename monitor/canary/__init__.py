"""The delivery canary: a labelled test message sent to a mailbox, seen, removed."""
