"""Network addresses: whether a host stays on this machine."""

import ipaddress


def is_loopback(host: str) -> bool:
    """True for an IP address in 127.0.0.0/8 or ::1; False for anything else, host names included."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
