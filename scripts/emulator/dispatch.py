"""Which moto backend serves a host name, worked out once per host.

moto's server dispatches every request under one process-wide lock: it lists moto's package
directory (a ``listdir`` and an ``isdir`` per service, ~150) and then tries the URL pattern
of every backend against the host, on each request. The answer depends on the host name
alone, and the emulator sees a few dozen (service x region), so it is remembered: with
eight requests at a time the lock was a queue every request waited in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_BACKEND_OF: dict[str | None, Any] = {}
_ORIGINAL: list[Callable[[Any, str | None], Any]] = []
_MISSING = object()


def _backend_for_host(self: Any, host: str | None) -> Any:
    # moto calls this under its dispatcher's lock; a lost race would only store the same answer.
    found = _BACKEND_OF.get(host, _MISSING)
    if found is _MISSING:
        found = _BACKEND_OF[host] = _ORIGINAL[0](self, host)
    return found


def install_dispatch_cache() -> None:
    """Patch moto's dispatcher once per process (its URL patterns are fixed at import)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    if _ORIGINAL:
        return
    _ORIGINAL.append(DomainDispatcherApplication.get_backend_for_host)
    DomainDispatcherApplication.get_backend_for_host = _backend_for_host  # type: ignore[method-assign]
