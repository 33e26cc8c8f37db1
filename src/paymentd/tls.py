"""TLS for `paymentd serve`: TLS 1.2 or newer, forward-secret AEAD ciphers only.

uvicorn's own defaults leave the floor to the platform's OpenSSL and pick the
cipher string "TLSv1" (CBC and SHA-1 suites only, for TLS 1.2 clients); this is
the hook that tightens its context, in every worker process.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

# TLS 1.2 suites: ECDHE key exchange and AEAD (Mozilla's "intermediate" list, without
# DHE, whose parameters OpenSSL would pick for us). TLS 1.3 suites are all AEAD already.
TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
])


def server_context(config: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's `ssl_context_factory`: its context (certificate, key, password) made strict.
    Module-level so that `--workers N` can hand it to each worker process."""
    context = default_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context
