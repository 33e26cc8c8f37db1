"""The header policy itself: what the edge adds, replaces and keeps."""

from __future__ import annotations

from paymentd.security_headers import API_CSP, HTML_CSP, csp_hash, html_csp, security_headers


def as_dict(headers: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return out


def test_a_route_cannot_make_an_answer_cacheable_or_sniffable() -> None:
    got = as_dict(security_headers([(b"Cache-Control", b"public, max-age=600"), (b"content-type", b"application/json")],
                                   tls=False, hsts="max-age=1"))
    assert got[b"cache-control"] == [b"no-store"]
    assert got[b"x-content-type-options"] == [b"nosniff"]
    assert got[b"content-security-policy"] == [API_CSP.encode()]
    assert b"strict-transport-security" not in got


def test_html_gets_the_html_policy_unless_the_route_chose_one() -> None:
    plain = as_dict(security_headers([(b"content-type", b"text/html; charset=utf-8")], tls=True, hsts="max-age=9"))
    assert plain[b"content-security-policy"] == [HTML_CSP.encode()]
    assert plain[b"strict-transport-security"] == [b"max-age=9"]
    own = html_csp(style_hashes=(csp_hash("body{}"),))
    chosen = as_dict(security_headers([(b"content-type", b"text/html"), (b"content-security-policy", own.encode())],
                                      tls=False, hsts="x"))
    assert chosen[b"content-security-policy"] == [own.encode()]
    assert "style-src 'sha256-" in own and "default-src 'none'" in own


def test_a_pdf_gets_every_header_but_a_csp() -> None:
    got = as_dict(security_headers([(b"content-type", b"application/pdf")], tls=True, hsts="max-age=9"))
    assert b"content-security-policy" not in got
    assert got[b"cache-control"] == [b"no-store"] and got[b"x-content-type-options"] == [b"nosniff"]
    assert got[b"strict-transport-security"] == [b"max-age=9"]
