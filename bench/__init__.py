"""Benchmarks: the probe engine against a raw-client baseline on a real Dovecot."""
