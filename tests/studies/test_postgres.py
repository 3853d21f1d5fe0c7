"""Studies shared by several workers through a real PostgreSQL server (tests/postgres_server.py):
two `platform study` processes complete one study together, as do a plain worker and a two-process
torchrun job, the running trial of a worker that died is marked failed by heartbeat, and an
unreachable server is reported by its URL."""

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from core.cli.main import main
from core.experiment.config import RunConfig
from studies.runner import StudySettings, open_storage, run_study
from tests.postgres_server import create_database, free_port, postgres_url  # noqa: F401  (a fixture)

ROOT = Path(__file__).parents[2]
TINY = ["--tasks", "sst", "--checkpoint", "tiny", "--limit", "16", "--max-length", "24", "--batch-size", "8",
        "--epochs", "1", "--threads", "1", "--sampler", "rrobin", "--pruner", "none"]


def start_worker(url: str, name: str, folder: Path, data_dir, cache: Path, processes: int = 1) -> subprocess.Popen:
    """`platform study NAME --storage URL --trials 2` in its own process (or a torchrun job of ``processes``),
    with its own cache (as on its own machine)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "core.cli", "study", name, "--storage", url, "--trials", "2",
               "--study-dir", str(folder), *TINY, "--data-dir", str(data_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PLATFORM_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}  # a torchrun job's gloo on loopback
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.integration
@pytest.mark.parametrize("processes", [(1, 1), (1, 2)], ids=["two-plain-workers", "a-plain-worker-and-a-torchrun-job"])
def test_two_workers_complete_one_study_together(postgres_url, tmp_path, tiny_data_dir, processes):  # noqa: F811
    name = f"shared-{'-'.join(map(str, processes))}"
    workers = [start_worker(postgres_url, name, tmp_path, tiny_data_dir, tmp_path / f"cache-{i}", n)
               for i, n in enumerate(processes)]
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=300)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [w.returncode for w in workers] == [0, 0], "\n\n".join(out[-3000:] for out in outputs)

    trials = optuna.load_study(study_name=name, storage=postgres_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    run_dirs = [t.user_attrs["run_dir"] for t in trials]
    assert sorted(run_dirs) == [str(tmp_path / name / f"trial-{n}") for n in range(4)]
    assert all((Path(d) / "metrics.json").exists() for d in run_dirs)
    # each worker ran two of the four trials, and no trial ran in both
    ran = [{int(n) for n in re.findall(r"Trial (\d+) finished", out)} for out in outputs]
    assert [len(r) for r in ran] == [2, 2] and ran[0] | ran[1] == {0, 1, 2, 3}, outputs


@pytest.mark.integration
def test_workers_opening_a_new_database_at_once_all_succeed(postgres_url):  # noqa: F811
    # they race to create its tables; plain RDBStorage fails in all but one of them
    url = create_database(postgres_url, "race")
    start, results = threading.Barrier(4), []

    def open_it():
        start.wait()
        try:
            open_storage(url).engine.dispose()
            results.append("ok")
        except Exception as error:  # reported below
            results.append(repr(error))

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ok"] * 4


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.integration
def test_the_running_trial_of_a_dead_worker_is_marked_failed(postgres_url, tmp_path, tiny_data_dir,  # noqa: F811
                                                             caplog):
    # what a worker killed mid-trial leaves behind: a RUNNING trial whose heartbeats stopped
    storage = optuna.storages.RDBStorage(postgres_url, heartbeat_interval=1, grace_period=2)
    dead = optuna.create_study(storage=storage, study_name="dead", direction="maximize")
    dead.set_user_attr("objective", "mean")
    orphan = dead.ask()
    storage.record_heartbeat(orphan._trial_id)
    storage.engine.dispose()
    time.sleep(3)  # past the grace period (twice the heartbeat) of the next worker

    base = RunConfig(tasks=("sst",), checkpoint="tiny", limit=16, max_length=24, batch_size=8, epochs=1, threads=1,
                     sampler="rrobin", data_dir=str(tiny_data_dir))
    settings = StudySettings(name="dead", trials=1, storage=postgres_url, study_dir=str(tmp_path), pruner="none",
                             heartbeat=1)
    study = run_study(base, settings)
    assert [(t.number, t.state) for t in study.trials] == [(0, TrialState.FAIL), (1, TrialState.COMPLETE)]
    assert study.trials[1].user_attrs["run_dir"] == str(tmp_path / "dead" / "trial-1")  # the dead one's folder is kept
    assert "trial 0 of study 'dead' was marked failed: its worker stopped sending heartbeats" in caplog.text


def test_an_unreachable_server_is_reported_by_its_url_without_the_password(capsys, tmp_path):
    port = free_port()  # nothing listens there
    code = main(["study", "nowhere", "--storage", f"postgresql://platform:secret@127.0.0.1:{port}/studies",
                 "--study-dir", str(tmp_path), *TINY])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"platform study: error: --storage: cannot open postgresql://platform:***@127.0.0.1:{port}/studies" in err
    assert "secret" not in err and "Traceback" not in err
