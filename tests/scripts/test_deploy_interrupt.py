"""Interrupts for real: ``vend deploy`` and ``vend emulator`` as subprocesses, signals sent
mid-run, then the written report is checked, and a re-run finishes the job.

The emulator answers every call after ``latency_ms``, so a run of five clients takes long
enough to be interrupted halfway. For a second signal, another emulator keeps one client's
AssumeRole waiting (``stuck_emulator``), so that a client is certainly in flight when it comes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from bench.portfolio import account_id, write_portfolio
from scripts.aws import AwsAccess, vend_bucket_name
from scripts.emulator.faults import fetch_calls
from scripts.synth import synthesize
from tests.scripts.kit import REGION, WRITES, fake_aws_env, subprocess_env

pytestmark = pytest.mark.slow
CLIENTS = 5
VEND = [sys.executable, "-m", "scripts.cli"]
REPO = Path(__file__).resolve().parents[2]
LOG_ARCHIVE = "210987654321"  # baseline/defaults.yaml: the deploy lock lives in this account
STUCK_S = 20


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("interrupt")
    overrides = root / "overrides"
    write_portfolio(overrides, CLIENTS, regions=1)
    assembly = root / "cdk.out"
    assert synthesize(overrides, assembly, validation=False, quiet=True) == 0
    return overrides, assembly


def _read_until(stream: IO[str], marker: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in time; got {lines}")


def _run_emulator(faults: Path, tmp: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [*VEND, "emulator", "--port", "0", "--faults", str(faults)],
        cwd=REPO,
        env=subprocess_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = _read_until(proc.stdout, "vend emulator ready at", 60)[-1]
        yield ready.split("ready at ", 1)[1].split()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("emulator")
    faults = tmp / "latency.yaml"
    faults.write_text("faults:\n  - service: '*'\n    latency_ms: 60\n")
    yield from _run_emulator(faults, tmp)


def _reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).close()


def _deploy(
    url: str,
    portfolio: tuple[Path, Path],
    report: Path,
    tmp: Path,
    concurrency: int = 2,
    python: Sequence[str] = ("-m", "scripts.cli"),
) -> subprocess.Popen[str]:
    overrides, assembly = portfolio
    return subprocess.Popen(
        [
            sys.executable,
            *python,
            "deploy",
            "--all",
            "--overrides",
            str(overrides),
            "--assembly",
            str(assembly),
            "--endpoint-url",
            url,
            "--report",
            str(report),
            "--progress",
            "plain",
            "--concurrency",
            str(concurrency),
            "--poll",
            "0.05",
        ],
        cwd=REPO,
        env=subprocess_env(tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((directory / "deploy-report.json").read_text())
    return data


def _writes_by_account(url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in fetch_calls(url)["calls"]:
        if row["service"] == "cloudformation" and row["operation"] in WRITES:
            counts[row["account"]] = counts.get(row["account"], 0) + row["count"]
    return counts


@pytest.mark.parametrize(("sig", "rerun"), [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_interrupt_mid_run_writes_a_correct_report_and_a_rerun_finishes_the_rest(
    sig: signal.Signals, rerun: bool, emulator: str, portfolio: tuple[Path, Path], tmp_path: Path
) -> None:
    _reset(emulator)
    report_dir = tmp_path / "report"
    proc = _deploy(emulator, portfolio, report_dir, tmp_path)
    assert proc.stdout is not None
    seen = _read_until(proc.stdout, f"[3/{CLIENTS + 1}]", 120)  # the MSP side and two clients are done
    proc.send_signal(sig)
    rest, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    assert f"vend: {sig.name}: no new clients start" in "\n".join(seen) + rest
    report = _report(report_dir)
    run = report["run"]
    assert run["interrupted"] is True and run["stop_reason"] == f"interrupted by {sig.name}"
    assert run["exit_code"] == 130
    targets = {t["name"]: t for t in report["targets"]}
    assert len(targets) == CLIENTS + 1  # every target is in the report, done or not
    assert targets["msp-log-archive"]["outcome"] == "OK"
    done = [n for n, t in targets.items() if t["outcome"] == "OK" and n != "msp-log-archive"]
    not_started = [n for n, t in targets.items() if t["detail"] == f"not started: interrupted by {sig.name}"]
    assert len(done) >= 2 and not_started, targets
    for name in not_started:
        assert targets[name]["outcome"] == "SKIPPED"
        assert {s["outcome"] for s in targets[name]["stacks"]} == {"SKIPPED"}
    # whatever was running when the signal came is reported for what it is, never as OK-and-silent
    for t in targets.values():
        assert t["outcome"] in ("OK", "SKIPPED", "INTERRUPTED", "IN_FLIGHT"), t
        assert all(s["outcome"] != "FAILED" for s in t["stacks"])
    assert (report_dir / "deploy-junit.xml").is_file() and (report_dir / "deploy-report.md").is_file()
    assert "stopped early: interrupted by" in rest
    if not rerun:
        return

    writes_before = _writes_by_account(emulator)
    again_dir = tmp_path / "again"
    again = _deploy(emulator, portfolio, again_dir, tmp_path, concurrency=4)
    out, err = again.communicate(timeout=120)

    assert again.returncode == 0, out + err
    second = {t["name"]: t for t in _report(again_dir)["targets"]}
    assert all(t["outcome"] == "OK" for t in second.values())
    for name in done:
        assert {s["outcome"] for s in second[name]["stacks"]} == {"UNCHANGED"}
    for name in not_started:
        assert {s["outcome"] for s in second[name]["stacks"]} == {"CREATED"}
    writes_after = _writes_by_account(emulator)
    for name in done:
        account = account_id(int(name.rsplit("-", 1)[1]))
        assert writes_after.get(account, 0) == writes_before.get(account, 0), name  # untouched


# vend deploy, but the S3 DeleteObject of its lock release sends it a SIGTERM: a second signal
# that lands exactly between the end of the rollout and the report.
_SIGTERM_IN_RELEASE = """
import os, signal, sys
from scripts import deploy_cmd
from scripts.cli import main

real = deploy_cmd._lock_for

def lock_for(*args, **kwargs):
    lock = real(*args, **kwargs)
    sent = []

    def interrupt(**_):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    lock.s3.meta.events.register("before-call.s3.DeleteObject", interrupt)
    return lock

deploy_cmd._lock_for = lock_for
sys.exit(main(sys.argv[1:]))
"""


def test_a_second_signal_while_the_lock_is_released_still_leaves_the_report_and_no_lock(
    emulator: str, portfolio: tuple[Path, Path], tmp_path: Path
) -> None:
    _reset(emulator)
    report_dir = tmp_path / "report"
    proc = _deploy(emulator, portfolio, report_dir, tmp_path, python=["-c", _SIGTERM_IN_RELEASE])
    assert proc.stdout is not None
    _read_until(proc.stdout, f"[3/{CLIENTS + 1}]", 120)
    proc.send_signal(signal.SIGTERM)  # the first: the rollout stops; the second comes in the release
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err  # not killed by the default SIGTERM action (-15)
    assert "vend: SIGTERM again: quit without waiting for in-flight calls" in err
    assert "vend: deploy lock released" in err
    report = _report(report_dir)
    assert report["run"]["exit_code"] == 130 and report["run"]["stop_reason"] == "interrupted by SIGTERM"
    assert len(report["targets"]) == CLIENTS + 1
    assert _lock_objects(emulator, tmp_path) == []


@pytest.fixture(scope="module")
def stuck_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator where the first client's first AssumeRole takes STUCK_S: that client is
    certainly in flight for as long as a test needs it to be."""
    tmp = tmp_path_factory.mktemp("stuck-emulator")
    faults = tmp / "stuck.yaml"
    faults.write_text(
        "faults:\n"
        f"  - {{service: sts, operation: AssumeRole, account: '{account_id(0)}', latency_ms: {STUCK_S * 1000},"
        " count: 1}\n"
    )
    yield from _run_emulator(faults, tmp)


def _lock_objects(url: str, tmp: Path) -> list[str]:
    """Keys under locks/ in vend's bucket of the log-archive account (where the deploy lock lives)."""
    with fake_aws_env(tmp):
        access = AwsAccess(endpoint_url=url)
        session = access.assume_role(
            f"arn:aws:iam::{LOG_ARCHIVE}:role/VendDeploy", external_id=None, session_name="test", region=REGION
        )
        s3 = access.client(session, "s3", REGION)
        listing = s3.list_objects_v2(Bucket=vend_bucket_name(LOG_ARCHIVE, REGION), Prefix="locks/")
    return [o["Key"] for o in listing.get("Contents", [])]


def test_a_second_signal_quits_at_once_and_still_leaves_a_report(
    stuck_emulator: str, portfolio: tuple[Path, Path], tmp_path: Path
) -> None:
    report_dir = tmp_path / "report"
    proc = _deploy(stuck_emulator, portfolio, report_dir, tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    # the MSP side and client-0001 are done; client-0000 hangs in AssumeRole for STUCK_S
    _read_until(proc.stdout, f"[2/{CLIENTS + 1}]", 120)
    proc.send_signal(signal.SIGINT)
    _read_until(proc.stdout, "vend: SIGINT: no new clients start", 30)  # the first one was acknowledged
    proc.send_signal(signal.SIGINT)  # ... while client-0000 is certainly in flight
    start = time.monotonic()
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 130, err
    assert time.monotonic() - start < STUCK_S / 2  # did not wait for the stuck call
    assert "vend: SIGINT again: quit without waiting for in-flight calls" in err
    assert "vend: deploy lock released" in err
    report = _report(report_dir)
    assert report["run"]["stop_reason"] == "interrupted by SIGINT twice"
    assert report["run"]["exit_code"] == 130
    targets = {t["name"]: t for t in report["targets"]}
    assert len(targets) == CLIENTS + 1
    assert targets["msp-log-archive"]["outcome"] == targets["client-0001"]["outcome"] == "OK"
    stuck = targets["client-0000"]
    assert stuck["outcome"] == "IN_FLIGHT" and "vend quit while this target was deploying" in stuck["detail"]
    assert {t["outcome"] for t in targets.values()} <= {"OK", "IN_FLIGHT", "SKIPPED"}
    not_started = [t for t in targets.values() if t["detail"] == "not started: interrupted by SIGINT"]
    assert not_started and all(t["outcome"] == "SKIPPED" for t in not_started)
    assert (report_dir / "deploy-junit.xml").is_file() and (report_dir / "deploy-report.md").is_file()

    # the lock was given back: the next run is not refused (and finishes the job)
    assert _lock_objects(stuck_emulator, tmp_path) == []
    again_dir = tmp_path / "again"
    out, err = _deploy(stuck_emulator, portfolio, again_dir, tmp_path, concurrency=4).communicate(timeout=120)

    assert "deploy lock held" not in err
    assert "deploy lock taken" in out
    assert {t["outcome"] for t in _report(again_dir)["targets"]} == {"OK"}, out + err
