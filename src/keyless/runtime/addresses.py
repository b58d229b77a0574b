"""Addresses, one rule for both daemons: ``host:port``, IPv6 in brackets (``[::1]:2406``).

A bare IPv6 address (``::1``) and a port without a host (``:9000``) are refused with the spelling to use,
since each has two plausible readings. Addresses to listen on must be IP addresses or names that resolve
now; addresses to connect to are checked for syntax only (DNS may differ between the check and the
connection).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path

from keyless.runtime.errors import ConfigError, MaterialProblem, show

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
HOST_PORT_FIX = "write host:port, e.g. 127.0.0.1:2406, [::1]:2406 or keys.example.com:2407"


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port`` by the rule in the module docstring; raises MaterialProblem(problem, fix)."""
    text = text.strip()
    if text.startswith("["):
        match = re.fullmatch(r"\[([^\]]*)\](?::(\d*))?", text)
        if match is None:
            raise MaterialProblem(f"{show(text)} is not [IPv6 address]:port", "write [::1]:2406")
        host, port_text = match.group(1), match.group(2)
        if not _is_ip(host, 6):
            raise MaterialProblem(f"{show(host)} in brackets is not an IPv6 address", "write [::1]:2406")
    elif text.count(":") > 1:
        fix = f"write [{text}]:PORT" if _is_ip(text, 6) else HOST_PORT_FIX
        raise MaterialProblem(f"{show(text)}: an IPv6 address must be in brackets", fix)
    else:
        host, colon, port_text = text.partition(":")
        if not colon:
            port_text = None  # type: ignore[assignment]
        if not host or (not colon and host.isdigit()):
            port = f":{host}" if host else text
            raise MaterialProblem(
                f"{show(text)} has no host",
                f"write 0.0.0.0{port} (every IPv4 address), [::]{port} (every address) or 127.0.0.1{port}",
            )
        check_host(host)
    if port_text is None or port_text == "":
        if default_port is None:
            raise MaterialProblem(f"{show(text)} has no port", HOST_PORT_FIX)
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise MaterialProblem(f"{show(text)} has a port outside 0..65535", HOST_PORT_FIX)
    return host, int(port_text)


def check_host(host: str) -> None:
    """An IP address or a syntactically valid DNS name (``10.1.2.3.4`` is neither)."""
    if _is_ip(host, 4) or _is_ip(host, 6):
        return
    if re.fullmatch(r"[0-9.]+", host):
        raise MaterialProblem(f"{show(host)} is not an IPv4 address", "write four numbers 0-255, e.g. 10.1.2.3")
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise MaterialProblem(f"{show(host)} is not an IP address or a host name", "e.g. 10.0.0.7 or keys.example.com")


def check_listen_host(host: str) -> None:
    """An address this machine can bind: an IP address, or a name that resolves now."""
    check_host(host)
    if _is_ip(host, 4) or _is_ip(host, 6):
        return
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise MaterialProblem(f"{show(host)} does not resolve ({reason})",
                              "use an IP address of this machine") from None


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def listen_error(exc: OSError, host: str, port: int, key: str, file: Path | None) -> ConfigError:
    """A port in use (or an address not on this machine), said the same way by both daemons."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio rewords strerror; errno is the fact
    return ConfigError(key, f"cannot listen on {address}: {reason}",
                       f"stop the process that holds {address}, or change {key}", file=file)


__all__ = ["HOST_PORT_FIX", "check_host", "check_listen_host", "listen_error", "parse_host_port"]
