"""AwsAccess against a plain moto server: endpoints, retries, assumed and refreshed roles."""

from __future__ import annotations

import datetime as dt
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.credentials import RefreshableCredentials
from moto.server import ThreadedMotoServer

from scripts.aws import AssumeRoleError, AwsAccess

CLIENT_ACCOUNT = "111122223333"
CLIENT_ROLE = f"arn:aws:iam::{CLIENT_ACCOUNT}:role/VendDeploy"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server per module, with fake credentials and no user AWS config."""
    nowhere = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "MOTO_ACCOUNT_ID"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_CONFIG_FILE", str(nowhere))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        yield url
        server.stop()


@pytest.fixture(autouse=True)
def fresh_state(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()


@dataclass(frozen=True)
class HookedAccess(AwsAccess):
    """AwsAccess whose clients carry botocore event hooks, to inject faults and observe calls."""

    hooks: tuple[tuple[str, Any], ...] = ()

    def client(self, session: boto3.Session, service: str, region: str) -> Any:
        client = super().client(session, service, region)
        for event, handler in self.hooks:
            client.meta.events.register(event, handler)
        return client


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def throttle_first(calls: list[str], times: int = 1) -> Any:
    """A before-send hook answering the first ``times`` requests with a Throttling error."""

    def handler(request: Any, **_: Any) -> AWSResponse | None:
        calls.append("sent")
        if len(calls) > times:
            return None
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
            b"<Message>Rate exceeded</Message></Error><RequestId>r1</RequestId></ErrorResponse>"
        )
        return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, _Body(body))

    return handler


def test_client_uses_explicit_endpoint_and_adaptive_retries(endpoint: str) -> None:
    access = AwsAccess(endpoint_url=endpoint)
    client = access.client(access.base_session(), "sqs", "eu-west-1")

    assert client.meta.endpoint_url == endpoint
    assert client.meta.region_name == "eu-west-1"
    # botocore stores max_attempts=10 (retries) as 11 attempts in total
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 11}
    client.create_queue(QueueName="reachable")
    assert client.list_queues()["QueueUrls"][0].endswith("/reachable")


def test_without_endpoint_boto3_resolves_aws_endpoint_url(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    access = AwsAccess()
    sts = access.client(access.base_session(), "sts", "us-east-1")

    assert sts.meta.endpoint_url == endpoint
    assert sts.get_caller_identity()["Account"] == "123456789012"  # moto's default account


def test_base_session_is_new_per_call_for_per_thread_use() -> None:
    access = AwsAccess()
    assert access.base_session() is not access.base_session()


def test_assume_role_acts_in_the_role_account_and_passes_external_id(endpoint: str) -> None:
    seen: list[dict[str, Any]] = []
    access = HookedAccess(
        endpoint_url=endpoint,
        hooks=(("provide-client-params.sts.AssumeRole", lambda params, **_: seen.append(params)),),
    )
    session = access.assume_role(
        CLIENT_ROLE, external_id="acme-4b1d9e", session_name="vend deploy/acme", region="us-east-1"
    )

    identity = access.client(session, "sts", "us-east-1").get_caller_identity()
    assert identity["Account"] == CLIENT_ACCOUNT
    assert isinstance(session.get_credentials(), RefreshableCredentials)
    assert seen[0]["ExternalId"] == "acme-4b1d9e"
    assert seen[0]["RoleSessionName"] == "vend-deploy-acme"  # made valid for STS


def test_assumed_credentials_refresh_before_expiry(endpoint: str) -> None:
    calls: list[str] = []

    def expire_soon(parsed: dict[str, Any], **_: Any) -> None:
        calls.append("AssumeRole")
        if len(calls) == 1:  # inside botocore's mandatory refresh window (10 minutes)
            expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
            parsed["Credentials"]["Expiration"] = expiry

    access = HookedAccess(endpoint_url=endpoint, hooks=(("after-call.sts.AssumeRole", expire_soon),))
    session = access.assume_role(CLIENT_ROLE, external_id=None, session_name="refresh", region="us-east-1")
    assert calls == ["AssumeRole"]  # eager

    sqs = access.client(session, "sqs", "us-east-1")
    sqs.create_queue(QueueName="after-refresh")
    assert calls == ["AssumeRole", "AssumeRole"]
    credentials = session.get_credentials()
    assert credentials is not None
    assert not credentials.refresh_needed()  # the refreshed keys last an hour
    assert access.client(session, "sts", "us-east-1").get_caller_identity()["Account"] == (CLIENT_ACCOUNT)


def test_unassumable_role_fails_at_once_with_a_hint(endpoint: str) -> None:
    def deny(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {
            "Code": "AccessDenied",
            "Message": "User is not authorized to perform: sts:AssumeRole",
        }
        return AWSResponse(endpoint, 403, {}, _Body(b"")), {"Error": error}

    access = HookedAccess(endpoint_url=endpoint, hooks=(("before-call.sts.AssumeRole", deny),))
    with pytest.raises(AssumeRoleError) as caught:
        access.assume_role(CLIENT_ROLE, external_id="wrong", session_name="x", region="us-east-1")

    err = caught.value
    assert err.role_arn == CLIENT_ROLE
    assert err.code == "AccessDenied"
    assert "not authorized" in err.message
    assert "ExternalId" in err.hint and "offboarded" in err.hint
    assert CLIENT_ROLE in str(err) and "trust policy" in str(err)


def test_throttled_call_is_retried(endpoint: str) -> None:
    calls: list[str] = []
    access = HookedAccess(
        endpoint_url=endpoint,
        hooks=(("before-send.sts.GetCallerIdentity", throttle_first(calls)),),
    )
    sts = access.client(access.base_session(), "sts", "us-east-1")

    response = sts.get_caller_identity()
    assert response["Account"] == "123456789012"
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(calls) == 2


def test_a_thread_client_acts_in_the_account_of_the_session_it_was_asked_for(endpoint: str) -> None:
    """thread_client reuses one client per service and region on a thread, account after account."""
    access = AwsAccess(endpoint_url=endpoint)
    accounts = ["111111111111", "222222222222", "111111111111"]
    seen = []
    clients = []
    for account in accounts:
        session = access.assume_role(
            f"arn:aws:iam::{account}:role/VendDeploy", external_id=None, session_name="t", region="us-east-1"
        )
        sts = access.thread_client(session, "sts", "us-east-1")
        clients.append(sts)
        seen.append(sts.get_caller_identity()["Account"])
    assert seen == accounts
    assert clients[0] is clients[1] is clients[2]  # one client, made once
    other = AwsAccess(endpoint_url=endpoint + "/")  # other settings: a client of its own
    assert other.thread_client(access.base_session(), "sts", "us-east-1") is not clients[0]
