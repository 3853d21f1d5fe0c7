"""`platform dashboard`: optuna-dashboard served over HTTP on loopback for a study's SQLite file."""

import json
import threading
import urllib.request

import optuna
import pytest

from core.cli.main import main
from studies.dashboard import make_dashboard, storage_url
from studies.runner import StudyError


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
