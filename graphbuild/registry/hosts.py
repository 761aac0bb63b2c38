"""Which registry hosts are this machine: the only ones spoken to in plain HTTP unasked, and the
only ones a plain-HTTP token realm may receive credentials on."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """``host[:port]`` names this machine: an address in 127.0.0.0/8, ``::1``, or exactly
    ``localhost``. A name that only starts like one (``127.0.0.1.example.com``,
    ``localhost.example.com``) is an ordinary remote host."""
    name = hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def hostname(host: str) -> str:
    """``host[:port]`` (``[v6]:port`` too) without the port."""
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host
