"""The deploy lock: two ``vend deploy`` runs of one portfolio never overlap.

Where: one object, ``locks/deploy.lock``, in vend's own bucket of the MSP's log-archive
account (``vend-deploy-<account>-<region>``, also used for templates over the inline
size limit). vend makes that bucket itself on first use, with the role it already holds
there to deploy the MSP side, so there is nothing for the user to create: no table, no
extra stack, and it exists before the first deploy (the central log bucket does not,
and its policy is for log delivery only). How: S3 conditional writes, atomic in S3:

- take it: ``PutObject(IfNoneMatch="*")`` succeeds for exactly one writer;
- keep it: the holder rewrites it every ``heartbeat_s`` with ``IfMatch=<its ETag>``;
- a lock not renewed for ``stale_after_s`` (by S3's own clock: ``LastModified`` against
  the response's ``Date``) belongs to a run that died; it is taken over with
  ``PutObject(IfMatch=<stale ETag>)``, which again only one writer can win;
- give it back: ``DeleteObject(IfMatch=<its ETag>)``, so a run never deletes a lock
  that someone else took over.

If the holder finds at a renewal that the lock is no longer its own, it stops starting
clients (``on_lost``). The log-archive deploy role needs s3:CreateBucket,
s3:PutBucketPublicAccessBlock and s3:PutEncryptionConfiguration on that bucket and
s3:GetObject, s3:PutObject, s3:DeleteObject on its objects. The emulator (moto)
implements the same conditional writes, so the tests exercise the real protocol.
"""

from __future__ import annotations

import contextlib
import email.utils
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

LOCK_KEY = "locks/deploy.lock"
DEFAULT_STALE_AFTER_S = 900.0
_CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class LockHeld(Exception):
    """Another run holds the lock; the message says who, since when, and what to do."""


class LockUnavailable(Exception):
    """The lock cannot be used at all (e.g. the central bucket does not exist yet)."""


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _server_now(response: dict[str, Any]) -> datetime:
    header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if header:
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(header)
    return datetime.now(UTC)


class DeployLock:
    """The lock object of one portfolio; ``s3`` is a client in the log-archive account."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        *,
        key: str = LOCK_KEY,
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
        heartbeat_s: float | None = None,
        command: str = "vend deploy",
        run_id: str | None = None,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else max(0.5, stale_after_s / 3)
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.command = command
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.took_over: dict[str, Any] | None = None
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._etag_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def held(self) -> bool:
        return self._etag is not None

    def _body(self) -> bytes:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        info = {
            "run_id": self.run_id,
            "owner": user,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": self.command,
            "started_at": self.started_at,
            "renewed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return json.dumps(info).encode()

    def acquire(self) -> None:
        """Take the lock or raise ``LockHeld`` / ``LockUnavailable``."""
        for _ in range(3):  # the holder may release between our write and our read
            try:
                response = self.s3.put_object(
                    Bucket=self.bucket, Key=self.key, Body=self._body(), IfNoneMatch="*", ContentType="application/json"
                )
                self._etag = str(response["ETag"])
                return
            except ClientError as err:
                if _code(err) == "NoSuchBucket":
                    raise LockUnavailable(f"the bucket {self.bucket} of the deploy lock does not exist") from err
                if _code(err) not in _CONFLICT:
                    raise LockUnavailable(f"cannot write the deploy lock {self.url}: {_code(err)}: {err}") from err
            try:
                current = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            except ClientError as err:
                if _code(err) in ("NoSuchKey", "404"):
                    continue
                raise LockUnavailable(f"cannot read the deploy lock {self.url}: {err}") from err
            holder = self._holder(current)
            age = (_server_now(current) - current["LastModified"]).total_seconds()
            if age < self.stale_after_s:
                raise LockHeld(self._held_message(holder, age))
            try:
                response = self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=self._body(),
                    IfMatch=current["ETag"],
                    ContentType="application/json",
                )
            except ClientError as err:
                if _code(err) in _CONFLICT:
                    continue  # someone else took over first; look again
                raise LockUnavailable(f"cannot take over the stale deploy lock {self.url}: {err}") from err
            self._etag = str(response["ETag"])
            self.took_over = {**holder, "stale_for_s": round(age)}
            return
        raise LockHeld(f"the deploy lock {self.url} keeps changing hands; another run is starting: try again later")

    @staticmethod
    def _holder(response: dict[str, Any]) -> dict[str, Any]:
        try:
            data = json.loads(response["Body"].read())
            return data if isinstance(data, dict) else {}
        except (ValueError, KeyError, OSError):
            return {}

    def _held_message(self, holder: dict[str, Any], age: float) -> str:
        who = f"{holder.get('owner', '?')}@{holder.get('host', '?')} (pid {holder.get('pid', '?')})"
        remaining = max(0, round(self.stale_after_s - age))
        return (
            f"another vend deploy of this portfolio is running: run {holder.get('run_id', '?')} by {who}, "
            f"`{holder.get('command', '?')}`, started {holder.get('started_at', '?')}, lock renewed {round(age)}s ago "
            f"({self.url}). Nothing was deployed. Wait for it to finish; if that run died, its lock goes stale "
            f"in {remaining}s (--lock-stale-after {self.stale_after_s:g}) and the next run takes it over"
        )

    def start_heartbeat(self, on_lost: Callable[[str], None]) -> None:
        """Renew the lock in the background; ``on_lost(reason)`` once if it is lost."""
        if self._thread is not None or self._etag is None:
            return

        def beat() -> None:
            last_ok = time.monotonic()
            while not self._stop.wait(self.heartbeat_s):
                try:
                    with self._etag_lock:
                        if self._etag is None:
                            return
                        response = self.s3.put_object(
                            Bucket=self.bucket,
                            Key=self.key,
                            Body=self._body(),
                            IfMatch=self._etag,
                            ContentType="application/json",
                        )
                        self._etag = str(response["ETag"])
                    last_ok = time.monotonic()
                except ClientError as err:
                    if _code(err) in (*_CONFLICT, "NoSuchKey"):
                        self._etag = None
                        on_lost(f"the deploy lock {self.url} was taken over by another run")
                        return
                except BotoCoreError:
                    pass  # a network blip: try again at the next beat
                if time.monotonic() - last_ok > self.stale_after_s:
                    on_lost(f"the deploy lock {self.url} could not be renewed for {self.stale_after_s:g}s")
                    return

        self._thread = threading.Thread(target=beat, name="vend-lock-heartbeat", daemon=True)
        self._thread.start()

    def release(self, *, timeout_s: float | None = None) -> bool:
        """Stop renewing and delete the lock if it is still ours (best effort); True when this
        run no longer holds it.

        ``timeout_s`` bounds the call, for quitting at once from a signal handler, which may have
        interrupted this very thread inside ``release``: the delete then runs in a helper thread
        that is abandoned after that long, and does not wait long for ``_etag_lock``.
        """
        self._stop.set()
        if timeout_s is None:
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._delete_own(None)
        else:
            helper = threading.Thread(
                target=self._delete_own, args=(timeout_s / 2,), name="vend-lock-release", daemon=True
            )
            helper.start()
            helper.join(timeout_s)
        return self._etag is None

    def _delete_own(self, wait_s: float | None) -> None:
        """Delete the lock object if it still has our ETag. ``wait_s``: how long to wait for a
        renewal (or a release) in progress before going ahead without it: its thread may be
        the one a signal handler interrupted, and never come back."""
        got = self._etag_lock.acquire(timeout=-1 if wait_s is None else wait_s)
        try:
            etag = self._etag
            if etag is None:
                return
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
            except ClientError as err:
                if _code(err) not in ("NoSuchKey", "404"):
                    return  # taken over by another run (412), or refused: not ours to delete
            except BotoCoreError:
                return
            self._etag = None
        finally:
            if got:
                self._etag_lock.release()

    def describe(self) -> dict[str, Any]:
        """For reports: where the lock is, this run's id, and whose stale lock was taken over."""
        return {"url": self.url, "run_id": self.run_id, "took_over": self.took_over}
