"""Accounts (merchants), their API keys and scopes."""
