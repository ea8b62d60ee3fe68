"""Which emulated account an access key belongs to, without a scan of every account.

moto answers that question (``moto.iam.models.get_account_id_from``, asked for every request
to set the caller's account) by looking through the IAM backend of every account and
partition: about 0.7 ms per request with 1,000 client accounts, CPU of the one Python
process that serves every call. The emulator remembers each answer and checks it with one
lookup in the remembered account (a key deleted since is looked up again). The temporary
keys of AssumeRole, a new one for every client account a run visits, are remembered as
they are made, so not even their first use scans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_ACCOUNT_OF: dict[str, str] = {}
_UNKNOWN = ""  # no account has the key
_ORIGINALS: dict[str, Callable[..., Any]] = {}
_MOTO: dict[str, Any] = {}  # moto's pieces, looked up once at install: these run on every request


def _account_id_from(access_key: str) -> str:
    known = _ACCOUNT_OF.get(access_key)
    if known == _UNKNOWN:
        return str(_MOTO["default_account"])
    if known is not None and _holds(known, access_key):
        return known
    found = str(_ORIGINALS["get_account_id_from"](access_key))
    # moto's default account is also its answer for a key no account has (e.g. the MSP's own
    # credentials, which are not IAM keys of an emulated account). Key ids are random: a key
    # no account has now is not created later.
    _ACCOUNT_OF[access_key] = found if _holds(found, access_key) else _UNKNOWN
    return found


def _create_temp_access_key(self: Any) -> Any:
    key = _ORIGINALS["create_temp_access_key"](self)
    _ACCOUNT_OF[key.physical_resource_id] = self.account_id
    return key


def _holds(account_id: str, access_key: str) -> bool:
    account = _MOTO["iam_backends"][account_id]
    return any(access_key in account[partition].access_keys for partition in _MOTO["partitions"])


def install_account_index() -> None:
    """Patch moto's lookup once per process; the index is emptied with moto's state."""
    import moto.iam.models
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.utilities.utils import PARTITION_NAMES

    from scripts.emulator.faults import ON_RESET

    if _ORIGINALS:
        return
    _MOTO.update(
        default_account=DEFAULT_ACCOUNT_ID, iam_backends=moto.iam.models.iam_backends, partitions=PARTITION_NAMES
    )
    _ORIGINALS["get_account_id_from"] = moto.iam.models.get_account_id_from
    _ORIGINALS["create_temp_access_key"] = moto.iam.models.IAMBackend.create_temp_access_key
    moto.iam.models.get_account_id_from = _account_id_from
    moto.iam.models.IAMBackend.create_temp_access_key = _create_temp_access_key  # type: ignore[method-assign]
    ON_RESET.append(_ACCOUNT_OF.clear)
