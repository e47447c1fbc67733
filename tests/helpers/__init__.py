"""Helpers for the sgframework tests: certificate generation and resource processes."""
