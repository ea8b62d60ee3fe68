"""Which moto backend serves a host name, worked out once per host.

moto's server dispatches every request under one process-wide lock: it lists moto's package
directory (a ``listdir`` and an ``isdir`` per service, ~150) and then tries the URL pattern
of every backend against the host, on each request. The answer depends on the host name
alone, and the emulator sees a few dozen (service x region), so it is remembered: with
eight requests at a time the lock was a queue every request waited in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_BACKEND_OF: dict[str | None, Any] = {}
_LOCK = threading.Lock()
_ORIGINAL: list[Callable[[Any, str | None], Any]] = []


def _backend_for_host(self: Any, host: str | None) -> Any:
    try:
        return _BACKEND_OF[host]
    except KeyError:
        pass
    found = _ORIGINAL[0](self, host)
    with _LOCK:
        _BACKEND_OF[host] = found
    return found


def install_dispatch_cache() -> None:
    """Patch moto's dispatcher once per process (its URL patterns are fixed at import)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if _ORIGINAL:
        return
    _ORIGINAL.append(DomainDispatcherApplication.get_backend_for_host)
    DomainDispatcherApplication.get_backend_for_host = _backend_for_host  # type: ignore[method-assign]
