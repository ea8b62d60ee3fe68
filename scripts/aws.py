"""AWS access for the driver: one place for credentials, endpoints and retries.

Every command must run unchanged against real AWS and the local emulator, so
endpoint selection is boto3's own (``AWS_ENDPOINT_URL``, profiles, ...) unless
``--endpoint-url`` is given explicitly. Every client gets adaptive retries:
across hundreds of accounts, throttling (``Rate exceeded``) is normal and must
never surface as a failed deploy.

Thread safety: a ``boto3.Session`` is not thread-safe, clients are. A worker
thread should get its own session (``base_session()`` or ``assume_role()``,
both return a fresh one on every call), create its clients from it, and never
share that session with other threads. Clients made from it may be shared.

Speed: every session shares one botocore data loader, so the service models (the
CloudFormation model alone is half a megabyte of JSON) are parsed once per process,
not once per client account: a new session with two clients costs about 30 ms of CPU
instead of 200 ms, which is what limits a deploy across 1,000 accounts.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

RETRY_CONFIG = {"mode": "adaptive", "max_attempts": 10}
ASSUME_ROLE_HINT = "check the client's ExternalId, the deploy role's trust policy, or whether the client was offboarded"
_SESSION_NAME_BAD_CHARS = re.compile(r"[^\w+=,.@-]")


_LOADER = botocore.loaders.create_loader()  # caches what it parses; shared by every session
_THREAD_CLIENTS = threading.local()  # AwsAccess.thread_client
# Clients that every thread may use (botocore clients are thread-safe; making them is not).
_SHARED_LOCK = threading.Lock()
_SHARED: dict[tuple[Any, ...], Any] = {}
_CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
)


def _core_session() -> botocore.session.Session:
    core = botocore.session.get_session()
    core.register_component("data_loader", _LOADER)
    return core


def vend_bucket_name(account: str, region: str) -> str:
    """vend's own bucket in an account: staged templates (``templates/``) and the deploy lock
    (``locks/``). Made by vend on first use; nothing for the user to create."""
    return f"vend-deploy-{account}-{region}"


def ensure_private_bucket(s3: Any, bucket: str, region: str, account: str) -> None:
    """Create ``bucket`` (private: public access blocked, encrypted) unless it exists and is
    ``account``'s. A bucket of that name owned by someone else is an error (403), never used."""
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
        return
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code")) != "BucketAlreadyOwnedByYou":
            raise
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


class AssumeRoleError(Exception):
    """A role could not be assumed; says which role, what AWS answered and where to look."""

    def __init__(self, role_arn: str, code: str, message: str, hint: str = ASSUME_ROLE_HINT):
        self.role_arn = role_arn
        self.code = code
        self.message = message
        self.hint = hint
        super().__init__(f"cannot assume role {role_arn}: {code}: {message} ({hint})")


class _FixedCredentialProvider(CredentialProvider):
    """Hands botocore one ready-made credentials object instead of its default chain."""

    METHOD = "vend-assume-role"
    CANONICAL_NAME = "custom-vend-assume-role"

    def __init__(self, credentials: RefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> RefreshableCredentials:
        return self._credentials


def safe_session_name(name: str) -> str:
    """Make a valid RoleSessionName (2-64 chars of ``[\\w+=,.@-]``) from any label."""
    cleaned = _SESSION_NAME_BAD_CHARS.sub("-", name)[:64]
    return cleaned if len(cleaned) >= 2 else f"vend-{cleaned}"


class SessionOnDemand:
    """A ``boto3.Session`` made the first time something uses it (making one costs ~10 ms of
    CPU: a deploy that only needs clients given the credentials never pays it)."""

    def __init__(self, make: Callable[[], boto3.Session]) -> None:
        self._make = make
        self._session: boto3.Session | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._session is None:
                self._session = self._make()
        return getattr(self._session, name)


@dataclass(frozen=True)
class AwsAccess:
    """How to reach AWS: the endpoint override; credentials come from boto3's usual chain."""

    endpoint_url: str | None = None  # explicit --endpoint-url; None = boto3's own resolution

    def base_session(self) -> boto3.Session:
        """A new session on boto3's default credential chain (env, AWS_PROFILE, SSO, ...).

        New on every call so each worker thread can own one.
        """
        return boto3.Session(botocore_session=_core_session())

    def client(self, session: boto3.Session, service: str, region: str) -> Any:
        """A client with adaptive retries, pointed at the explicit endpoint if one was given."""
        config = Config(retries=dict(RETRY_CONFIG), user_agent_extra="vend")
        kwargs: dict[str, Any] = {"region_name": region, "config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return session.client(service, **kwargs)

    def thread_client(self, session: boto3.Session, service: str, region: str) -> Any:
        """A client acting with ``session``'s credentials, reused within the calling thread.

        For work that goes account after account on one thread (drift checks a dozen services
        per account): making a client costs ~3 ms of CPU and a new connection, half the CPU
        of a drift scan. The thread's client for the service and region is kept and given
        the new account's credentials (botocore signs every request with the credentials its
        request signer holds). Only for clients the thread is done with before it moves on
        to the next account: never share them across threads.
        """
        cache: dict[tuple[Any, ...], Any] = _THREAD_CLIENTS.__dict__.setdefault("clients", {})
        key = (type(self), self, service, region)
        credentials = session.get_credentials()
        client = cache.get(key)
        if client is None or credentials is None:
            client = self.client(session, service, region)
            cache[key] = client
        else:
            client._request_signer._credentials = credentials
        return client

    def _shared(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        """One object per process for ``key`` (with this AwsAccess's settings), made once."""
        # An AwsAccess of other settings, or other base credentials in the environment, gets its own.
        key = (type(self), self, tuple(os.environ.get(name) for name in _CREDENTIAL_ENV), *key)
        found = _SHARED.get(key)
        if found is None:
            with _SHARED_LOCK:
                found = _SHARED.get(key)
                if found is None:
                    found = _SHARED[key] = make()
        return found

    def _sts(self, region: str) -> Any:
        """The process's STS client on the base credentials (AssumeRole for account after account),
        shared by the threads: each making its own cost ~15 ms of CPU per thread and region."""
        return self._shared(("sts", region), lambda: self.client(self.base_session(), "sts", region))

    def _client_factory(self) -> boto3.Session:
        """The session that makes the threads' clients whose credentials vend sets itself (a new
        session per client costs ~10 ms of CPU). Sessions are not thread-safe: use under
        ``_SHARED_LOCK``."""
        return self._shared(("factory",), self.base_session)

    def assume_role(self, role_arn: str, *, external_id: str | None, session_name: str, region: str) -> boto3.Session:
        """A new session acting as ``role_arn`` whose credentials renew themselves.

        The first AssumeRole runs now, so an unassumable role fails here with an
        ``AssumeRoleError`` rather than halfway through a deploy. Later renewals
        (botocore refreshes ahead of expiry) call AssumeRole again with the same
        base credentials, so long waits on big stacks never run on stale keys.
        """
        credentials = self.assumed_credentials(
            role_arn, external_id=external_id, session_name=session_name, region=region
        )
        return self.session_with(credentials, region)

    @staticmethod
    def session_with(credentials: RefreshableCredentials, region: str) -> boto3.Session:
        """A new session acting with ``credentials`` (e.g. from :meth:`assumed_credentials`)."""
        core = _core_session()
        core.register_component("credential_provider", CredentialResolver([_FixedCredentialProvider(credentials)]))
        return boto3.Session(botocore_session=core, region_name=region)

    def credentials_client(self, credentials: Any, service: str, region: str) -> Any:
        """The calling thread's client for the service and region, acting with ``credentials``
        (see :meth:`thread_client`): no session at all, for one quick look into an account
        (a botocore session costs ~10 ms of CPU to make; the deploy ledger's check of an
        unchanged client is two API calls and should cost little more)."""
        cache: dict[tuple[Any, ...], Any] = _THREAD_CLIENTS.__dict__.setdefault("clients", {})
        key = (type(self), self, service, region)
        client = cache.get(key)
        if client is None:
            factory = self._client_factory()
            with _SHARED_LOCK:
                client = cache[key] = self.client(factory, service, region)
        client._request_signer._credentials = credentials
        return client

    def assumed_credentials(
        self, role_arn: str, *, external_id: str | None, session_name: str, region: str
    ) -> RefreshableCredentials:
        """Credentials of ``role_arn`` that renew themselves (the first AssumeRole runs now)."""
        sts = self._sts(region)
        params: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": safe_session_name(session_name),
        }
        if external_id is not None:
            params["ExternalId"] = external_id

        def fetch() -> dict[str, Any]:
            try:
                creds = sts.assume_role(**params)["Credentials"]
            except ClientError as err:
                error = err.response.get("Error", {})
                raise AssumeRoleError(
                    role_arn, str(error.get("Code", "Unknown")), str(error.get("Message", err))
                ) from err
            except BotoCoreError as err:
                raise AssumeRoleError(role_arn, type(err).__name__, str(err)) from err
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        return RefreshableCredentials.create_from_metadata(
            metadata=fetch(), refresh_using=fetch, method=_FixedCredentialProvider.METHOD
        )
