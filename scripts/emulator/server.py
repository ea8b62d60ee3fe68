"""The local AWS emulator: moto's server with the baseline's CloudFormation handlers.

Usage::

    with Emulator() as emulator:
        session.client("cloudformation", endpoint_url=emulator.url)

moto keeps its state in module-level backends, so every emulator in one process shares
it; assume a role into a distinct account (STS, any account id works) to isolate tests.
``MOTO_ACCOUNT_ID`` is deliberately left alone: setting it breaks assume-role accounts.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from scripts.emulator.faults import ARRIVED, FaultInjector, FaultMiddleware, FaultPlan, install_hooks


def register_models() -> None:
    """Make moto's CloudFormation use this project's handlers (idempotent).

    moto builds its type-to-handler map once, from ``CloudFormationModel.__subclasses__()``,
    and caches it: importing the handlers alone is not enough once a template was parsed.
    """
    from moto.cloudformation import parsing

    from scripts.emulator import (
        accounts,
        cfn_models,
        cfn_models_extra,
        dispatch,
        fast_templates,
        resource_import,
        stack_protection,
        stacksets,
    )

    fast_templates.install_fast_templates()
    accounts.install_account_index()
    dispatch.install_dispatch_cache()
    cfn_models.install_engine_patches()
    stack_protection.install_protection_patches()
    stacksets.install_stackset_patches()
    resource_import.install_import_patches()  # after cfn_models: wraps its ResourceMap.update
    parsing.get_model_map.cache_clear()
    parsing.get_model_list.cache_clear()
    parsing.get_name_type_map.cache_clear()
    model_map = parsing.get_model_map()
    for resource_type, handler in {**cfn_models.HANDLERS, **cfn_models_extra.HANDLERS}.items():
        # IAM types are also in moto's map; ours must be the one that won.
        if model_map.get(resource_type) is not handler:
            raise RuntimeError(
                f"moto resolves {resource_type} to {model_map.get(resource_type)!r}, "
                f"not to the emulator's {handler.__name__}"
            )


class _TimedRequestHandler(MotoRequestHandler):
    """moto's request handler, noting when the connection came in (``vend.arrived`` in the
    WSGI environ): a fault rule's latency counts from there, as a real API's includes reading
    the request (every request is a new connection: werkzeug closes each one)."""

    def handle(self) -> None:
        self.vend_arrived = time.monotonic()
        super().handle()

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ[ARRIVED] = self.vend_arrived
        return environ


class _FaultyMotoServer(ThreadedMotoServer):
    """moto's threaded server with the fault layer (``faults.FaultMiddleware``) in front."""

    def __init__(self, injector: FaultInjector, ip_address: str, port: int) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._injector = injector

    def _server_entry(self) -> None:
        app = FaultMiddleware(DomainDispatcherApplication(create_backend_app), self._injector)
        self._server = make_server(self._ip_address, self._port, app, True, request_handler=_TimedRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


class Emulator:
    """A moto server in a background thread, with the handlers registered.

    A class rather than a bare ``ThreadedMotoServer`` so that callers get the real port
    (``port=0`` lets the OS pick a free one, without a race) and a ``with`` block.
    ``faults`` (a validated fault file, see ``faults.py``) injects errors, latency and
    preset stack states; without it the fault layer only counts calls (``injector.calls``).
    """

    def __init__(self, faults: FaultPlan | None = None) -> None:
        self._server: ThreadedMotoServer | None = None
        self._url: str | None = None
        self.injector = FaultInjector(faults)

    def start(self, host: str = "127.0.0.1", port: int = 0, *, log_requests: bool = False) -> Emulator:
        """Start serving on ``host:port`` (``port=0``: a free port); returns self.

        Request logging is off by default: one line per API call drowns the demo's output.
        """
        if self._server is not None:
            raise RuntimeError(f"emulator already running at {self._url}")
        register_models()
        install_hooks()
        logging.getLogger("werkzeug").setLevel(logging.INFO if log_requests else logging.ERROR)
        server = _FaultyMotoServer(self.injector, host, port)
        server.start()
        bound_host, bound_port = server.get_host_and_port()
        self._server = server
        self._url = f"http://{bound_host}:{bound_port}"
        return self

    @property
    def url(self) -> str:
        """The endpoint URL for boto3 (``endpoint_url``/``AWS_ENDPOINT_URL``)."""
        if self._url is None:
            raise RuntimeError("emulator is not running; call start() first")
        return self._url

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        """Stop serving (idempotent). The emulated AWS state stays in the process."""
        if self._server is None:
            return
        server, self._server, self._url = self._server, None, None
        server.stop()

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
