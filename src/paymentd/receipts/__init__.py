"""Receipts of succeeded payments: numbered once per account, rendered as JSON, HTML
and PDF, and emailed when the payment succeeds."""
