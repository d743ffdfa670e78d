"""Who may steer routing with the canary header (``x-experiment-spiralogic``).

With ``canary.header_allowed = "staff"`` (production) the header counts only
for staff: a request whose ``x-staff-key`` is one of ``canary.staff_keys`` (a
secret list), or that comes from an address in ``canary.staff_networks``.
Anyone else's header is ignored, not refused: the turn is routed as if it were
absent, and its route reason says so.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from flask import Request

from spiralogic.routing import HEADER
from spiralogic.turn_settings import CanarySettings

STAFF_HEADER = "x-staff-key"


def canary_header(request: Request, canary: CanarySettings) -> tuple[str | None, bool]:
    """The canary header to route by, and whether one was sent but ignored."""
    value = request.headers.get(HEADER)
    if value is None or canary.header_allowed == "anyone" or is_staff(request, canary):
        return value, False
    return None, True


def is_staff(request: Request, canary: CanarySettings) -> bool:
    return _valid_key(request.headers.get(STAFF_HEADER, ""), canary.staff_keys) or _in_networks(
        request.remote_addr or "", canary.staff_networks
    )


def _valid_key(given: str, keys) -> bool:
    # Every key is compared, each in constant time, so the timing tells nothing about any of them.
    matches = [hmac.compare_digest(given.encode(), key.encode()) for key in keys if key]
    return bool(given) and any(matches)


@functools.lru_cache(maxsize=4096)
def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    # Kept per address: clients come back, and parsing an address costs more than the rest of routing.
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in network for network in _parsed(networks))


@functools.lru_cache(maxsize=8)
def _parsed(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    # Parsed once, not on every request: the list only changes with the settings.
    return tuple(ipaddress.ip_network(network, strict=False) for network in networks)
