"""The deploy ledger: what vend last deployed successfully, so an unchanged run skips the work.

One JSON object, ``state/deploy-ledger.json``, in vend's bucket of the log-archive account,
next to the deploy lock (scripts/lock.py). Sections:

- ``direct``: per client, the fingerprint of its stacks (template hash, tags) as deployed
  by the last run in which all of them ended OK, the account and when;
- ``stacksets``: per stack set and account, the hash of the parameter overrides applied by
  the last successful operation and that operation's id.

It is a cache of vend's own work, never the truth about an account: a run trusts an entry
only together with a live check (direct mode: the client's global stack still carries the
recorded template hash; StackSets: the instance's last operation is the recorded one), and
``vend deploy --refresh`` ignores it. Writes are read-modify-write with S3 conditional
writes (``IfMatch``), so two runs never lose each other's entries even without the lock.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

LEDGER_KEY = "state/deploy-ledger.json"
_CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_MISSING = ("NoSuchKey", "404", "NotFound")


class LedgerError(Exception):
    """The ledger could not be read or written (the run goes on without it)."""


def fingerprint(parts: Mapping[str, Any]) -> str:
    """A stable digest of anything JSON can hold (sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class Ledger:
    """The ledger document, loaded once per run; updates are kept until :meth:`save`."""

    def __init__(self, s3: Any, bucket: str, *, owner: str, key: str = LEDGER_KEY) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._owner = owner
        self._key = key
        self._data: dict[str, dict[str, Any]] = {}
        self._pending: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._lock = threading.Lock()

    def _read(self) -> tuple[dict[str, dict[str, Any]], str | None]:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=self._key, ExpectedBucketOwner=self._owner)
        except ClientError as err:
            if _code(err) in _MISSING:
                return {}, None
            raise LedgerError(f"cannot read s3://{self._bucket}/{self._key}: {err}") from err
        except BotoCoreError as err:
            raise LedgerError(f"cannot read s3://{self._bucket}/{self._key}: {err}") from err
        try:
            data = json.loads(response["Body"].read())
        except ValueError:
            data = {}  # a damaged ledger only costs a full check of every stack
        return (data if isinstance(data, dict) else {}), str(response.get("ETag"))

    def load(self) -> Ledger:
        self._data, _ = self._read()
        return self

    def get(self, section: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            if (section, name) in self._pending:
                return self._pending[(section, name)]
            entry = (self._data.get(section) or {}).get(name)
            return dict(entry) if isinstance(entry, dict) else None

    def record(self, section: str, name: str, entry: Mapping[str, Any]) -> None:
        with self._lock:
            self._pending[(section, name)] = {**entry, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def forget(self, section: str, name: str) -> None:
        with self._lock:
            self._pending[(section, name)] = None

    def save(self, attempts: int = 5) -> int:
        """Merge this run's updates into the stored ledger; returns how many were written."""
        with self._lock:
            pending = dict(self._pending)
        if not pending:
            return 0
        for _ in range(attempts):
            data, etag = self._read()
            for (section, name), entry in pending.items():
                entries = data.setdefault(section, {})
                if entry is None:
                    entries.pop(name, None)
                else:
                    entries[name] = entry
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=json.dumps(data, sort_keys=True).encode(),
                    ContentType="application/json",
                    ExpectedBucketOwner=self._owner,
                    **condition,
                )
            except ClientError as err:
                if _code(err) in _CONFLICT:
                    continue  # another run wrote in between: read again and merge
                raise LedgerError(f"cannot write s3://{self._bucket}/{self._key}: {err}") from err
            except BotoCoreError as err:
                raise LedgerError(f"cannot write s3://{self._bucket}/{self._key}: {err}") from err
            with self._lock:
                self._data = data
                for key, entry in pending.items():
                    if self._pending.get(key) is entry:  # not re-recorded since
                        del self._pending[key]
            return len(pending)
        raise LedgerError(f"s3://{self._bucket}/{self._key} kept changing under this run ({attempts} attempts)")
