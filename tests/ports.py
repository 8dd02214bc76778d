"""A loopback port for a test's own server (one helper for the unit and the integration tests)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listened on a moment ago; the caller binds it next (a race other tests on
    this machine could lose only by binding the very same ephemeral port first)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
