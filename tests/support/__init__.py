"""Helpers shared by the test suites: real servers in threads, real databases."""
