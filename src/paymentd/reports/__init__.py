"""Reports over an account's payments: GET /api/reports/summary (see service.py for
what every figure means, schemas.py for the response)."""
