"""Where a webhook may be sent (SSRF guard): checked at registration and again at
every send, on every address the host resolves to; the send then connects to the
address that was checked, so a DNS answer that changes in between (rebinding)
cannot swap in another."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

# host, port -> the addresses it resolves to (tests inject their own).
Resolver = Callable[[str, int], Awaitable[list[str]]]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_S = 5.0


class TargetRefused(Exception):
    """The URL or its addresses may not be sent to; the message says why (no secrets in it)."""

    def __init__(self, message: str, code: str = "invalid_url") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str  # with the query

    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def parse(url: str, *, allow_private: bool) -> Target:
    """The URL's parts, or TargetRefused: https (http only with private targets
    allowed), a host, no credentials, no fragment."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 for c in url):
        raise TargetRefused("The URL is not valid.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefused("The URL is not valid.") from error
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_private):
        raise TargetRefused("The URL must use https.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The URL must not carry credentials.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    if parts.fragment:
        raise TargetRefused("The URL must not have a fragment.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80), path)


def refused_address(address: str) -> str | None:
    """Why an address may not be a target (None: a public address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "an unreadable address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "a private address"
    return None


async def resolve(target: Target, resolver: Resolver, *, allow_private: bool) -> list[str]:
    """The addresses to connect to, every one checked; TargetRefused if any is refused."""
    try:
        literal = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    try:
        if literal is not None:
            addresses = [str(literal)]  # an address in the URL: nothing to resolve
        else:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                addresses = await resolver(target.host, target.port)
    except (OSError, UnicodeError, TimeoutError) as error:
        raise TargetRefused("The URL's host does not resolve.", code="url_unresolvable") from error
    if not addresses:
        raise TargetRefused("The URL's host does not resolve.", code="url_unresolvable")
    if not allow_private:
        for address in addresses:
            if (why := refused_address(address)) is not None:
                raise TargetRefused(f"The URL's host resolves to {why}.", code="url_not_allowed")
    return addresses


async def check(url: str, resolver: Resolver, *, allow_private: bool) -> Target:
    """For registration: the URL is well formed and every address it resolves to allowed."""
    target = parse(url, allow_private=allow_private)
    if not allow_private:
        await resolve(target, resolver, allow_private=False)
    return target
