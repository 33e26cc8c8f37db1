"""The security headers every response carries (API.md "Security headers").

Kept apart from the middleware so the policy is one readable table, and so a route
with its own HTML needs (receipts' inline style) builds its CSP from the same parts.
"""

from __future__ import annotations

import base64
import hashlib

# Every response: API answers hold client secrets and personal data, so nothing may
# cache them; nothing may sniff a JSON body into HTML, frame us, or leak our URLs.
ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

# A non-HTML answer needs nothing at all; saying so costs one header and stops a JSON
# body opened as a document from doing anything (OWASP's advice for REST APIs).
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

# Sent unless the response chose its own: two years, subdomains too (a payment API's
# host has no business serving plain HTTP anywhere below it).
DEFAULT_HSTS = "max-age=63072000; includeSubDomains"

SET_BY_EDGE = frozenset({name for name, _ in ALWAYS} | {b"content-security-policy", b"strict-transport-security"})


def html_csp(*, style_hashes: tuple[str, ...] = (), script_hashes: tuple[str, ...] = (),
             own_assets: bool = False) -> str:
    """A CSP for our own HTML: nothing from other hosts, no forms, no framing; inline
    styles and scripts only by the hash of their exact text; with `own_assets`, also
    scripts, styles, images and fetches from this origin (the /docs page's files)."""
    self_ = ["'self'"] if own_assets else []
    parts = ["default-src 'none'"]
    if script_hashes or own_assets:
        parts.append("script-src " + " ".join([*self_, *(f"'{h}'" for h in script_hashes)]))
    if style_hashes or own_assets:
        parts.append("style-src " + " ".join([*self_, *(f"'{h}'" for h in style_hashes)]))
    if own_assets:
        parts += ["img-src 'self' data:", "connect-src 'self'"]
    parts += ["frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"]
    return "; ".join(parts)


def csp_hash(inline: str) -> str:
    """The CSP source (`sha256-...`) that allows exactly this inline <style> text."""
    return "sha256-" + base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()


HTML_CSP = html_csp()

# The dashboard's pages (dashboard/): everything from paymentd itself and nothing inline.
# No script runs there today; 'self' lets a served file add one later without
# weakening the policy. Its forms post only to paymentd.
DASHBOARD_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                 "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                 "frame-ancestors 'none'; form-action 'self'")


def security_headers(headers: list[tuple[bytes, bytes]], *, tls: bool, hsts: str) -> list[tuple[bytes, bytes]]:
    """The response's headers with ours set: ALWAYS replace what a route sent (no
    route may make an answer cacheable); a route's own CSP is kept (it knows its HTML),
    else HTML gets HTML_CSP and everything else API_CSP; HSTS only over TLS."""
    kept: list[tuple[bytes, bytes]] = []
    csp = None
    media = b""
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-type":
            media = value.lower()
        if lower == b"content-security-policy":
            csp = value
        if lower not in SET_BY_EDGE:
            kept.append((name, value))
    kept.extend(ALWAYS)
    if csp is None and not media.startswith(b"application/pdf"):
        # Not on PDFs: browsers show them in a plugin viewer that `default-src 'none'`
        # (object-src) can stop from rendering an inline receipt; a PDF runs no script of ours.
        csp = (HTML_CSP if media.startswith(b"text/html") else API_CSP).encode()
    if csp is not None:
        kept.append((b"content-security-policy", csp))
    if tls:
        kept.append((b"strict-transport-security", hsts.encode()))
    return kept
