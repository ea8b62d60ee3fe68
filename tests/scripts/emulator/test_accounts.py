"""The emulator's access-key index (scripts/emulator/accounts.py): every request is answered
in the account its key belongs to, also after the key is deleted or the state is reset."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import moto.iam.models
import pytest
import requests

from scripts.emulator import accounts as account_index
from scripts.emulator.server import Emulator
from tests.scripts.kit import assume

REGION = "us-east-1"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


def _account_of(url: str, key: str, secret: str) -> str:
    sts = boto3.client("sts", endpoint_url=url, aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION)
    return str(sts.get_caller_identity()["Account"])


def _user_key(emulator: Emulator, account: str) -> tuple[str, str, str]:
    """An IAM user's access key in ``account`` (through a role assumed into it)."""
    iam = assume(emulator, account).client("iam")
    user = f"u-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return user, key["AccessKeyId"], key["SecretAccessKey"]


def test_a_key_is_answered_in_its_own_account_every_time(emulator: Emulator) -> None:
    assert moto.iam.models.get_account_id_from is account_index._account_id_from  # the emulator installed it
    accounts = [f"4{n:011d}" for n in range(3)]
    keys = [_user_key(emulator, a) for a in accounts]
    for _ in range(2):  # the second round is answered from the index
        assert [_account_of(emulator.url, k, s) for _, k, s in keys] == accounts
    # A key no account has is moto's default account's, as without the index.
    assert _account_of(emulator.url, "AKIANOSUCHKEY0000000", "x") == "123456789012"


def test_a_deleted_key_is_looked_up_again(emulator: Emulator) -> None:
    account = "400000000099"
    user, key, secret = _user_key(emulator, account)
    assert _account_of(emulator.url, key, secret) == account
    assume(emulator, account).client("iam").delete_access_key(UserName=user, AccessKeyId=key)
    assert _account_of(emulator.url, key, secret) == "123456789012"


def test_a_reset_empties_the_index(emulator: Emulator) -> None:
    account = "400000000098"
    _, key, secret = _user_key(emulator, account)
    assert _account_of(emulator.url, key, secret) == account
    requests.post(f"{emulator.url}/moto-api/reset", timeout=10).raise_for_status()
    assert _account_of(emulator.url, key, secret) == "123456789012"  # the key went with the state


def test_an_assumed_role_key_is_known_from_its_creation(emulator: Emulator) -> None:
    account = "400000000097"
    assumed = assume(emulator, account)
    assert account_index._ACCOUNT_OF[assumed.session.get_credentials().access_key] == account  # before its first use
    assert assumed.client("sts").get_caller_identity()["Account"] == account
