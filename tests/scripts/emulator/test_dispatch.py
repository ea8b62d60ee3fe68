"""The emulator's dispatch memo (scripts/emulator/dispatch.py) answers as moto does."""

from __future__ import annotations

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from scripts.emulator import dispatch
from scripts.emulator.server import register_models

HOSTS = [
    None,
    "moto_api",
    "sts.us-east-1.amazonaws.com",
    "cloudformation.eu-central-1.amazonaws.com",
    "s3.amazonaws.com",
    "my-bucket.s3.us-west-2.amazonaws.com",
    "guardduty.ap-southeast-2.amazonaws.com",
    "budgets.amazonaws.com",
    "iam.amazonaws.com",
    "config.us-east-2.amazonaws.com",
    "example.invalid",
]


def test_every_host_gets_the_backend_moto_would_choose() -> None:
    register_models()
    app = DomainDispatcherApplication(create_backend_app)
    assert DomainDispatcherApplication.get_backend_for_host is dispatch._backend_for_host  # installed
    original = dispatch._ORIGINAL[0]
    for _ in range(2):  # the second round is answered from the memo
        assert [app.get_backend_for_host(h) for h in HOSTS] == [original(app, h) for h in HOSTS]
    assert {"sts", "cloudformation", "s3", "iam"} <= set(map(str, (app.get_backend_for_host(h) for h in HOSTS)))
