"""`platform dashboard`: optuna-dashboard served over HTTP on loopback for a study's SQLite file; storage URLs
shown without their password, a warning for a host other machines reach, and clear refusals of a bad port or
host, in real `platform dashboard` processes."""

import json
import os
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import optuna
import pytest

from core.cli.main import main
from studies.dashboard import make_dashboard, storage_url
from studies.runner import StudyError, safe_url
from tests.postgres_server import free_port, postgres_url  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow  # each test serves a real dashboard (seconds each): left out of make quick


@pytest.fixture
def finished_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo' / 'study.db'}"
    (tmp_path / "demo").mkdir()
    study = optuna.create_study(study_name="demo", storage=url, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("smart_weight", 0.5, 20.0, log=True), n_trials=3)
    return tmp_path


def test_dashboard_serves_the_study_and_its_trials(finished_study):
    server = make_dashboard(storage_url("demo", str(finished_study), None), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        studies = json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=30).read())["study_summaries"]
        assert [s["study_name"] for s in studies] == ["demo"]
        detail = json.loads(urllib.request.urlopen(f"{base}/api/studies/{studies[0]['study_id']}?after=0",
                                                   timeout=30).read())
        assert len(detail["trials"]) == 3 and all(t["state"] == "Complete" for t in detail["trials"])
        page = urllib.request.urlopen(f"{base}/dashboard/", timeout=30).read().decode()
        assert "<html" in page.lower()
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_study_lists_the_known_ones(finished_study):
    with pytest.raises(StudyError, match=r"no study database at .*nope.*studies under .*: demo"):
        storage_url("nope", str(finished_study), None)


def test_cli_error_without_study_or_storage(capsys):
    assert main(["dashboard"]) == 2
    assert "name a study" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Secrets and exposure: what the command prints, in a real `platform dashboard` process
# --------------------------------------------------------------------------------------------------

ROOT = Path(__file__).parents[2]


def dashboard_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core.cli", "dashboard", *args], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def lines_until_served(process: subprocess.Popen) -> list[str]:
    """The lines a serving dashboard printed up to its address line; then it is stopped."""
    lines = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if "optuna-dashboard for" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=30)
    return lines


def refused(*args: str) -> str:
    """The output of a `platform dashboard` that must refuse its options: exit 2 and one line."""
    result = subprocess.run([sys.executable, "-m", "core.cli", "dashboard", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr.strip()


@pytest.mark.parametrize("url, shown", [
    ("postgresql://user:PASSWORD@db.example:5432/studies", "postgresql://user:***@db.example:5432/studies"),
    ("postgresql://user:p@ss@db.example/studies", "postgresql://user:***@db.example/studies"),  # a bare '@'
    ("postgresql://user:p%40ss/w:rd@db.example/studies", "postgresql://user:***@db.example/studies"),
    ("postgresql://user@db.example/studies?password=hunter2&sslmode=require",
     "postgresql://user@db.example/studies?password=***&sslmode=require"),
    ("postgresql://user@db.example/studies", "postgresql://user@db.example/studies"),
    ("sqlite:////tmp/a@b/study.db", "sqlite:////tmp/a@b/study.db"),
])
def test_a_storage_url_is_shown_with_its_whole_password_hidden(url, shown):
    assert safe_url(url) == shown


def test_the_dashboard_never_prints_a_password_nor_part_of_one(finished_study):
    port = free_port()  # nothing listens there
    message = refused("--storage", f"postgresql://platform:PASSWORD@127.0.0.1:{port}/studies")
    assert message.startswith(f"platform dashboard: error: --storage: cannot open postgresql://platform:***@127.0.0.1:"
                              f"{port}/studies: ") and "PASSWORD" not in message
    # an '@' in the password: SQLAlchemy's own masking printed "ss@127.0.0.1" here, and it would connect to a host
    # named "ss@127.0.0.1"; the URL is refused, with the whole password hidden
    message = refused("--storage", f"postgresql://platform:p@ss@127.0.0.1:{port}/studies")
    assert message == (f"platform dashboard: error: --storage postgresql://platform:***@127.0.0.1:{port}/studies: "
                       "the user name or password holds an '@'; write it as %40 in the URL, or leave the password "
                       "out of the URL and set PGPASSWORD (PostgreSQL)")


def test_the_address_line_of_a_served_postgres_storage_hides_the_password(postgres_url):  # noqa: F811
    # the test server trusts loopback connections: any password is accepted, and none may be printed
    url = postgres_url.replace("platform@", "platform:s3cr%40t@")
    lines = lines_until_served(dashboard_process("--storage", url, "--port", "0"))
    assert lines[-1].startswith(f"optuna-dashboard for {url.replace('s3cr%40t', '***')}: http://127.0.0.1:"), lines
    assert not any("s3cr" in line for line in lines)


def test_a_host_other_machines_reach_is_served_with_a_warning(finished_study):
    lines = lines_until_served(dashboard_process("demo", "--study-dir", str(finished_study), "--host", "0.0.0.0",
                                                 "--port", "0"))
    warning = [line for line in lines if line.startswith("warning: ")]
    assert len(warning) == 1 and warning[0].startswith(
        "warning: --host 0.0.0.0 serves the dashboard beyond this machine, without authentication: anyone who "
        "reaches port "), lines
    assert "delete studies and trials" in warning[0] and "127.0.0.1" in warning[0]
    assert lines[-1].startswith("optuna-dashboard for sqlite:///") and "http://0.0.0.0:" in lines[-1]


def test_the_loopback_default_is_served_without_a_warning(finished_study):
    lines = lines_until_served(dashboard_process("demo", "--study-dir", str(finished_study), "--port", "0"))
    assert len(lines) == 1 and lines[0].startswith("optuna-dashboard for sqlite:///"), lines


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_port_out_of_range_is_one_clear_line(finished_study, port):
    assert refused("demo", "--study-dir", str(finished_study), "--port", port) == (
        f"platform dashboard: error: --port {port}: not a TCP port; give one in 0..65535 (0 picks a free one)")


@pytest.mark.parametrize("host, reason", [
    ("no-such-host.invalid", "does not resolve to an IPv4 address of this machine"),
    ("203.0.113.7", "not an address of this machine"),  # TEST-NET-3: never a local address
])
def test_an_unusable_host_is_named_as_the_host_not_blamed_on_the_port(finished_study, host, reason):
    message = refused("demo", "--study-dir", str(finished_study), "--host", host, "--port", "0")
    assert message.startswith(f"platform dashboard: error: --host {host}: {reason} ("), message
    assert "--port" not in message and message.endswith("use 127.0.0.1 (this machine only) or one of its addresses")
