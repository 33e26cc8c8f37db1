"""Client IP -> country, offline, from a table the operator supplies.

No network lookup on the payment path and no bundled database that silently ages:
`PAYMENTD_IP_COUNTRIES_FILE` names a CSV of `network,CC` (`203.0.113.0/24,AU`) or
`first,last,CC` lines (the layout of the free DB-IP / IP2Location LITE country
exports), loaded once per process. Without it every IP's country is "" (unknown).
"""

from __future__ import annotations

import bisect
import csv
import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CountryTable:
    # Per IP version: sorted range starts, their ends and countries (ranges do not overlap).
    starts: dict[int, list[int]]
    ends: dict[int, list[int]]
    countries: dict[int, list[str]]

    def country(self, ip: str) -> str:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return ""
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        version, value = address.version, int(address)
        starts = self.starts.get(version, [])
        index = bisect.bisect_right(starts, value) - 1
        if index >= 0 and value <= self.ends[version][index]:
            return self.countries[version][index]
        return ""


EMPTY = CountryTable({}, {}, {})


def load(path: str | Path | None) -> CountryTable:
    """The table in `path` (ValueError naming the line when one cannot be read)."""
    if not path:
        return EMPTY
    ranges: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#"):
                continue
            try:
                first, last, country = _range(row)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
            ranges[first.version].append((int(first), int(last), country))
    table = CountryTable({}, {}, {})
    for version, items in ranges.items():
        items.sort()
        table.starts[version] = [start for start, _, _ in items]
        table.ends[version] = [end for _, end, _ in items]
        table.countries[version] = [country for _, _, country in items]
    return table


def _range(row: list[str]) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Address |
                                     ipaddress.IPv6Address, str]:
    cells = [cell.strip() for cell in row]
    if len(cells) == 2:
        network = ipaddress.ip_network(cells[0], strict=False)
        first, last, country = network.network_address, network.broadcast_address, cells[1]
    elif len(cells) >= 3:
        first, last, country = ipaddress.ip_address(cells[0]), ipaddress.ip_address(cells[1]), cells[2]
        if first.version != last.version or int(last) < int(first):
            raise ValueError("the range's ends do not match")
    else:
        raise ValueError("expected `network,CC` or `first,last,CC`")
    if len(country) != 2 or not country.isalpha():
        raise ValueError("the country is a two-letter ISO 3166 code")
    return first, last, country.upper()
