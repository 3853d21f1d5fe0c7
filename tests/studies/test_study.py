"""Tiny real studies (tiny encoder, 16 examples per task, 1-2 epochs): trials, continuation, pruning,
failures, objectives, storage errors, and what every trial leaves behind."""

import contextlib
import io
import json
import types
from pathlib import Path

import optuna
import pytest

from core.base.errors import PlatformError
from core.cli.main import main, parser_for
from core.plugin.component import Component
from core.plugin.hookspecs import hookimpl
from core.experiment.config import RunConfig
from studies.objective import PruningPlugin, make_pruner, parse_objective
from studies.runner import StudyError, StudySettings, run_study

pytestmark = pytest.mark.slow  # real tiny studies: several training runs each: left out of make quick

EXAMPLE = Path(__file__).parents[2] / "studies" / "interleaved_ratios.toml"
TINY = ["--tasks", "sst,sts", "--checkpoint", "tiny", "--limit", "16", "--max-length", "24", "--threads", "1",
        "--batch-size", "8"]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load(folder, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name / 'study.db'}")


def tiny_base(data_dir, **changes):
    return RunConfig(**{**dict(tasks=("sst", "sts"), checkpoint="tiny", limit=16, max_length=24, batch_size=8,
                               epochs=2, threads=1, sampler="rrobin", data_dir=str(data_dir)), **changes})


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_data_dir):
    """`platform study` twice under one NAME: 2 trials with the median pruner, then 1 more."""
    folder = tmp_path_factory.mktemp("studies")
    args = ["study", "tiny", "--study-dir", folder, "--pruner", "median", "--space-file", EXAMPLE, *TINY,
            "--epochs", "2", "--sampler", "interleaved", "--data-dir", tiny_data_dir]
    outputs, first = [], None
    for trials in (2, 1):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main([str(a) for a in args] + ["--trials", str(trials)]) == 0
        outputs.append(out.getvalue())
        first = first or [(t.number, t.params, t.values) for t in load(folder, "tiny").trials]
    return folder, load(folder, "tiny"), first, outputs


def test_study_runs_its_trials_and_reports_every_epoch(study):
    folder, loaded, first, _ = study
    assert loaded.directions == [optuna.study.StudyDirection.MAXIMIZE]
    assert [t.state for t in loaded.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in loaded.trials:
        assert sorted(trial.intermediate_values) == [1, 2]  # both epochs reported, at epochs completed
        assert trial.value == pytest.approx(max(trial.intermediate_values.values()))


def test_running_the_same_name_again_continues_the_study(study):
    folder, loaded, first, outputs = study
    assert len(first) == 2 and len(loaded.trials) == 3
    assert [(t.number, t.params, t.values) for t in loaded.trials[:2]] == first  # nothing changed or deleted
    assert sorted(p.name for p in (folder / "tiny").glob("trial-*")) == ["trial-0", "trial-1", "trial-2"]
    assert "A new study" not in outputs[1]


def test_every_trial_records_its_run_folder_metrics_and_the_space_file(study):
    folder, loaded, _, _ = study
    for trial in loaded.trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert run_dir == folder / "tiny" / f"trial-{trial.number}"
        best = json.loads((run_dir / "metrics.json").read_text())["best"]
        assert trial.user_attrs["metrics"] == best and {"sst", "sts", "mean"} <= set(best)
        config = json.loads((run_dir / "config.json").read_text())
        assert config["dropout"] == trial.user_attrs["fixed:dropout"] == 0.1  # fixed by the space file
        assert 1e-4 <= trial.params["lr"] <= 1e-3 and config["lr"] == trial.params["lr"]
        assert config["pooling"] == "mean" and "pooling" in trial.params  # one choice left: still suggested
        assert config["components"]["interleaved"]["ratios"] == {"sst": trial.params["ratio_sst"],
                                                                 "sts": trial.params["ratio_sts"]}
        assert 2 <= trial.params["ratio_sst"] <= 8 and 2 <= trial.params["ratio_sts"] <= 8


def test_hparams_of_every_trial_are_written_for_tensorboard(study):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    folder, loaded, _, _ = study
    for trial in loaded.trials:
        files = list((folder / "tiny" / "hparams" / f"trial-{trial.number}").glob("events.out.tfevents.*"))
        tags = {value.tag for path in files for event in EventFileLoader(str(path)).Load()
                if event.HasField("summary") for value in event.summary.value}
        assert {"_hparams_/experiment", "_hparams_/session_start_info", "dev/sst", "dev/sts", "objective"} <= tags


def test_the_table_lists_trials_and_the_best_run_folder(study):
    folder, loaded, _, outputs = study
    table = outputs[1]
    assert table.splitlines()[0].split() == ["trial", "state", "mean", "params"]
    assert "dropout=0.1 (fixed)" in table and "ratio_sst=" in table
    best = loaded.best_trial
    assert f"best trial: {best.number} (mean {best.value:.4f}), run folder {best.user_attrs['run_dir']}" in table


def test_pareto_objective_makes_a_multi_objective_study(capsys, tmp_path, tiny_data_dir):
    code, out, _ = run_cli(capsys, "study", "front", "--study-dir", tmp_path, "--objective", "pareto", "--trials", 1,
                           *TINY, "--epochs", "1", "--sampler", "rrobin", "--data-dir", tiny_data_dir)
    assert code == 0 and "pruning is off for --objective pareto" in out
    loaded = load(tmp_path, "front")
    assert loaded.directions == [optuna.study.StudyDirection.MAXIMIZE] * 2 and loaded.metric_names == ["sst", "sts"]
    trial = loaded.trials[0]
    metrics = trial.user_attrs["metrics"]
    assert trial.values == [metrics["sst"], metrics["sts"]] and trial.intermediate_values == {}
    assert "Pareto-optimal trials: 0" in out


def test_a_study_with_a_validation_split_reports_and_selects_on_it(tmp_path, tiny_data_dir):
    settings = StudySettings(name="held", trials=1, study_dir=str(tmp_path), pruner="none")
    trial = run_study(tiny_base(tiny_data_dir, validation_split=0.25), settings).trials[0]
    metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
    assert metrics["selected_on"] == trial.user_attrs["selected_on"] == "validation"
    assert [trial.intermediate_values[epoch] for epoch in (1, 2)] == [h["mean"] for h in metrics["history"]]
    assert trial.value == metrics["best"]["mean"] and trial.user_attrs["metrics"] == metrics["best"]
    assert trial.user_attrs["dev_metrics"] == metrics["dev"] != metrics["best"]


def test_a_pruned_trial_stops_and_says_why(tmp_path, tiny_data_dir):
    settings = StudySettings(name="pruned", trials=1, study_dir=str(tmp_path))
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # prunes every trial
    study = run_study(tiny_base(tiny_data_dir), settings, pruner=always)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [1]
    assert trial.user_attrs["reason"].startswith("pruned after epoch 1 of 2: mean ")
    assert trial.user_attrs["metrics"]["epoch"] == 0
    assert (tmp_path / "pruned" / "hparams" / "trial-0").is_dir()


def test_hyperband_prunes_a_poor_trial_after_its_first_epoch():
    """Steps are epochs completed: with --epochs 2, Hyperband's first rung (min_resource 1) comes
    after the first epoch, so a pruned trial saves the second."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner("hyperband", epochs=2))
    run = types.SimpleNamespace(config=RunConfig(epochs=2))
    outcomes = []
    for score in (0.9, 0.1):  # a good trial, then a poor one
        trial = study.ask()
        plugin = PruningPlugin(trial, parse_objective("mean", ("sst",)))
        try:
            plugin.platform_on_epoch_end(run=run, epoch=0, metrics={"sst": score, "mean": score})
            outcomes.append("continues")
            study.tell(trial, score)
        except optuna.TrialPruned as pruned:
            outcomes.append(str(pruned))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert outcomes == ["continues", "pruned after epoch 1 of 2: mean 0.1000"]


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path, tiny_data_dir):
    class Broken:
        @hookimpl
        def platform_search_spaces(self):
            return [Component("broken", lambda trial, base: {"data_dir": str(tmp_path / "nowhere")})]

    settings = StudySettings(name="broken", trials=2, study_dir=str(tmp_path))
    with pytest.raises(StudyError, match="all 2 trial"):
        run_study(tiny_base(tiny_data_dir), settings, plugins=[Broken()])
    trials = load(tmp_path, "broken").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    assert all("no data folder found" in t.user_attrs["error"] for t in trials)


def test_ctrl_c_in_a_trial_stops_the_study_without_a_traceback_in_the_log(tmp_path, tiny_data_dir, caplog):
    """Optuna logs a trial its objective left by KeyboardInterrupt as failed, with the traceback; the study
    drops that record (the command says "interrupted; ..." in one line) and still records the trial."""
    class CtrlC:
        @hookimpl
        def platform_on_epoch_start(self, run, epoch):
            raise KeyboardInterrupt  # what Ctrl-C (SIGINT's default handler) raises in the training loop

    settings = StudySettings(name="stopped", trials=3, study_dir=str(tmp_path))
    with caplog.at_level("INFO"), pytest.raises(KeyboardInterrupt):
        run_study(tiny_base(tiny_data_dir), settings, plugins=[CtrlC()])
    assert not [record for record in caplog.records if record.name == "optuna.study._optimize"]
    assert "Traceback" not in caplog.text and "KeyboardInterrupt" not in caplog.text
    assert [t.state for t in load(tmp_path, "stopped").trials] == [optuna.trial.TrialState.FAIL]


def test_an_existing_study_with_other_directions_is_refused_and_kept(capsys, tmp_path):
    (tmp_path / "old").mkdir()
    old = optuna.create_study(study_name="old", storage=f"sqlite:///{tmp_path / 'old' / 'study.db'}",
                              direction="minimize")
    old.add_trial(optuna.trial.create_trial(value=1.0))
    code, _, err = run_cli(capsys, "study", "old", "--study-dir", tmp_path, *TINY)
    assert code == 2 and "study 'old'" in err and "['minimize']" in err and "['maximize']" in err
    code, _, err = run_cli(capsys, "study", "old", "--study-dir", tmp_path, "--objective", "pareto", *TINY)
    assert code == 2 and "['maximize', 'maximize']" in err
    assert len(load(tmp_path, "old").trials) == 1


def test_an_existing_study_of_another_objective_is_refused(capsys, tmp_path):
    (tmp_path / "mean").mkdir()
    study = optuna.create_study(study_name="mean", storage=f"sqlite:///{tmp_path / 'mean' / 'study.db'}",
                                direction="maximize")
    study.set_user_attr("objective", "mean")
    code, _, err = run_cli(capsys, "study", "mean", "--study-dir", tmp_path, "--objective", "weighted:sst=1", *TINY)
    assert code == 2 and "study 'mean'" in err and "optimizes mean, not weighted:sst=1" in err


def test_a_study_continued_on_edited_data_is_refused_and_kept(capsys, caplog, tmp_path, tiny_data_dir):
    """The study records the fingerprints of its data files: continued after a train label was edited it is
    refused, naming the file; an edited test file is only reported."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data)
    args = ["study", "data", "--study-dir", tmp_path, "--trials", 1, "--pruner", "none", *TINY, "--epochs", 1,
            "--sampler", "rrobin", "--data-dir", data]
    assert run_cli(capsys, *args)[0] == 0
    recorded = load(tmp_path, "data").user_attrs["data_files"]
    assert {"ids-sst-train.csv", "sts-dev.csv"} <= set(recorded)
    train = data / "ids-sst-train.csv"
    original = train.read_text()
    train.write_text(original.replace("\t4\n", "\t0\n", 1))  # one training label edited
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.startswith("platform study: error: study 'data': the data changed since the study "
                                        "started: ids-sst-train.csv (sst/train)")
    assert len(load(tmp_path, "data").trials) == 1
    train.write_text(original)
    test = data / "ids-sst-test-student.csv"
    test.write_text(test.read_text() + "\n")
    with caplog.at_level("WARNING", logger="platform"):
        code, _, err = run_cli(capsys, *args)
    assert code == 0 and "ids-sst-test-student.csv changed since the study started (sst/test)" in caplog.text
    assert len(load(tmp_path, "data").trials) == 2


def test_a_study_continued_with_another_base_configuration_is_refused_and_kept(capsys, tmp_path, tiny_data_dir):
    args = ["study", "base", "--study-dir", tmp_path, "--trials", 1, "--pruner", "none", *TINY, "--epochs", 1,
            "--sampler", "rrobin", "--data-dir", tiny_data_dir]
    code, _, _ = run_cli(capsys, *args)
    assert code == 0
    before = load(tmp_path, "base")
    recorded = before.user_attrs["base_config"]
    assert recorded["tasks"] == ["sst", "sts"] and recorded["limit"] == 16 and "data_dir" not in recorded

    code, _, err = run_cli(capsys, *args, "--tasks", "sst", "--epochs", 2, "--plugins", "smart", "--smart-weight", 2)
    url = f"sqlite:///{(tmp_path / 'base' / 'study.db').resolve()}"
    assert code == 2 and "Traceback" not in err
    assert err == (f"platform study: error: study 'base' in {url} was created with another base configuration: "
                   "--tasks sst,sts (now: sst); --plugins none (now: smart); --epochs 1 (now: 2); --smart-* not set "
                   "(now: weight=2.0, epsilon=1e-05, step_size=0.001, noise=1e-05, steps=1, norm=inf, momentum=0.995, "
                   "bregman_weight=1.0); give the options it was created with, or choose another NAME (the existing "
                   "study was left as it is)\n")
    after = load(tmp_path, "base")
    assert len(after.trials) == 1 and after.user_attrs == before.user_attrs  # nothing new recorded
    assert sorted(p.name for p in (tmp_path / "base").glob("trial-*")) == ["trial-0"]

    # where the data is, how many threads, how evaluation is batched: a worker's own business
    (tmp_path / "data-link").symlink_to(tiny_data_dir, target_is_directory=True)
    code, _, _ = run_cli(capsys, *args, "--data-dir", tmp_path / "data-link", "--threads", 2, "--eval-batch-size", 4)
    assert code == 0 and len(load(tmp_path, "base").trials) == 2


def test_a_study_without_a_recorded_base_records_the_first_one_it_is_run_with(capsys, caplog, tmp_path, tiny_data_dir):
    (tmp_path / "old").mkdir()
    old = optuna.create_study(study_name="old", storage=f"sqlite:///{tmp_path / 'old' / 'study.db'}",
                              direction="maximize")
    old.set_user_attr("objective", "mean")  # as studies were made before they recorded their base
    old.add_trial(optuna.trial.create_trial(value=0.5))
    args = ["study", "old", "--study-dir", tmp_path, "--trials", 1, "--pruner", "none", *TINY, "--epochs", 1,
            "--sampler", "rrobin", "--data-dir", tiny_data_dir]
    code, _, err = run_cli(capsys, *args)
    assert code == 0 and "study 'old' has no recorded base configuration" in caplog.text
    continued = load(tmp_path, "old")
    assert continued.user_attrs["base_config"]["sampler"] == "rrobin" and len(continued.trials) == 2
    code, _, err = run_cli(capsys, *args, "--sampler", "proportional")
    assert code == 2 and "--sampler rrobin (now: proportional)" in err


def test_base_options_of_a_component_not_in_the_study_are_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "study", "off", "--study-dir", tmp_path, *TINY, "--sampler", "rrobin",
                           "--bam-teachers", "sst=runs/teacher")
    assert code == 2 and err == ("platform study: error: --bam-teachers is a setting of regularizer 'bam' from plugin "
                                 "'bam', which is not enabled: add --plugins bam\n")
    assert not (tmp_path / "off").exists()


def test_a_search_space_that_sets_a_components_settings_is_refused(tmp_path, tiny_data_dir):
    """A space over the run's own settings cannot reach a component's: those are searched by the component's
    own space, which a study calls only when the component takes part in the run."""

    class Stray:
        @hookimpl
        def platform_search_spaces(self):
            return [Component("stray", lambda trial, base: {"components": {"smart": {
                "weight": trial.suggest_float("stray_weight", 1.0, 2.0)}}})]

    settings = StudySettings(name="stray", trials=1, study_dir=str(tmp_path))
    with pytest.raises(PlatformError) as info:
        run_study(tiny_base(tiny_data_dir), settings, plugins=[Stray()])
    assert str(info.value).startswith("search space 'stray' (plugin study-extra-0) overrides 'components', which is "
                                      "not a searchable setting; known: ")
    assert not (tmp_path / "stray").exists()


@pytest.mark.parametrize("args,message", [
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"],
     "--storage: cannot open postgresql://nobody@127.0.0.1:1/none: "),
    (["--storage", "not a url"], "--storage: cannot open not a url"),
    (["--objective", "weighted:quora=1"], "--objective: task 'quora' is not among the tasks of the study (sst, sts)"),
    (["--objective", "best"], "--objective: unknown objective 'best'"),
    (["--output-dir", "x"], "--output-dir is set per trial"),
    (["--trials", "0"], "--trials must be positive"),
    (["--enqueue", "ratio_sst"], "--enqueue: bad entry 'ratio_sst'; expected NAME=VALUE"),
    (["--enqueue", "smart_weight=5"], "--enqueue: unknown parameter 'smart_weight'; the active search spaces suggest: "),
    (["--enqueue", "ratio_sst=100"], "--enqueue: ratio_sst=100 is outside its range 1 .. 64"),
    (["--enqueue", "ratio_sst=2.5"], "--enqueue: ratio_sst=2.5 is not an integer"),
    (["--enqueue", "pooling=max"], "--enqueue: pooling=max is not one of its choices (cls, mean)"),
    (["--enqueue", "lr=1e-4,lr=2e-4"], "--enqueue: parameter 'lr' is given twice"),
    (["--space-file", EXAMPLE, "--enqueue", "dropout=0.2"],
     "--enqueue: dropout is fixed at 0.1 by " + f"{EXAMPLE}: [params.dropout]; only searched parameters"),
])
def test_bad_study_options_give_one_clear_message(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, "study", "bad", "--study-dir", tmp_path, *TINY, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_an_enqueued_trial_runs_first_with_its_values_and_only_once(tmp_path, tiny_data_dir):
    queued = {"ratio_sst": 8, "ratio_sts": 2, "lr": 2e-4}
    args = ["study", "queued", "--study-dir", tmp_path, "--space-file", EXAMPLE, *TINY, "--epochs", "1",
            "--sampler", "interleaved", "--pruner", "none", "--data-dir", tiny_data_dir,
            "--enqueue", ",".join(f"{name}={value}" for name, value in queued.items())]
    for trials in (2, 1):  # the second invocation continues the study: the values are not run again
        with contextlib.redirect_stdout(io.StringIO()):
            assert main([str(a) for a in args] + ["--trials", str(trials)]) == 0
    trials = load(tmp_path, "queued").trials
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert {name: trials[0].params[name] for name in queued} == queued
    assert sum({name: t.params[name] for name in queued} == queued for t in trials) == 1
    config = json.loads((tmp_path / "queued" / "trial-0" / "config.json").read_text())
    assert config["lr"] == 2e-4 and config["components"]["interleaved"]["ratios"] == {"sst": 8, "sts": 2}


def test_help_documents_every_option():
    parser = parser_for(["study", "--plugins", "smart"])
    text = parser.format_help()
    for option in ("--trials", "--timeout", "--storage", "--space-file", "--show-space", "--objective", "--pruner",
                   "--study-dir", "--enqueue", "--tasks", "--checkpoint", "--epochs", "--limit", "--plugins",
                   "--interleaved-ratios"):
        assert option in text
    assert all(action.help for action in parser._actions)


def test_a_storage_url_with_a_bare_at_in_its_password_is_refused_without_printing_any_of_it(capsys, tmp_path):
    """SQLAlchemy ends the password at the first '@' (it printed "ss@127.0.0.1" of "p@ss" and would connect to
    a host named so): refused before anything is opened, the whole password hidden."""
    code, out, err = run_cli(capsys, "study", "shared", "--storage", "postgresql://platform:p@ss@127.0.0.1:1/studies",
                             "--study-dir", tmp_path, *TINY)
    assert code == 2 and out == "" and err == (
        "platform study: error: --storage postgresql://platform:***@127.0.0.1:1/studies: the user name or password "
        "holds an '@'; write it as %40 in the URL, or leave the password out of the URL and set PGPASSWORD "
        "(PostgreSQL)\n")
    assert not (tmp_path / "shared").exists()
