"""Several runs as one model: `platform evaluate RUN RUN` and `platform predict RUN RUN --out` average the
runs' head outputs."""

from pathlib import Path

import attrs
import pytest
import torch

from core.base.errors import ConfigError
from core.build import run as run_
from core.build.trained import evaluate_checkpoint, load_run, predict_checkpoint
from core.cli.main import main
from core.model.ensemble import Ensemble
from core.plugin.manager import make_plugin_manager
from core.experiment.config import load_data
from core.train import loop as loop_
from core.train.evaluation import head_outputs


def train(config, seed, folder, **changes):
    config = attrs.evolve(config, seed=seed, output_dir=str(folder), epochs=1, **changes)
    loop_.train(run_.prepare(config, make_plugin_manager(enabled=config.plugins)))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data_dir):
    """Three tiny runs of SST and STS: seeds 1, 1 again (identical), and 2."""
    from core.experiment.config import RunConfig

    root = tmp_path_factory.mktemp("ensemble")
    config = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", limit=24, batch_size=8, eval_batch_size=16,
                       max_length=32, lr=1e-3, sampler="rrobin", data_dir=str(tiny_data_dir), threads=1, device="cpu",
                       precision="fp32")
    return config, [train(config, seed, root / name) for seed, name in [(1, "a"), (1, "a-again"), (2, "b")]]


def test_the_ensemble_outputs_the_mean_of_its_members(runs):
    config, (a, _, b) = runs
    (_, model_a, tokenizer), (_, model_b, _) = load_run(a), load_run(b)
    data = load_data(config, model_a.tasks, tokenizer, "dev")
    for name in ("sst", "sts"):
        outputs_a, outputs_b = (head_outputs(m, data[name], tokenizer.pad, 16, progress=False) for m in (model_a, model_b))
        assert not torch.equal(outputs_a, outputs_b)  # the seeds made different models
        mean = head_outputs(Ensemble([model_a, model_b]), data[name], tokenizer.pad, 16, progress=False)
        torch.testing.assert_close(mean, (outputs_a + outputs_b) / 2)


def test_an_ensemble_of_identical_runs_scores_as_one_and_of_different_runs_from_the_mean(runs):
    _, (a, a_again, b) = runs
    assert evaluate_checkpoint([a, a_again]) == evaluate_checkpoint(a)
    pair = evaluate_checkpoint([a, b])
    assert set(pair) == {"sst", "sts", "mean"} and pair["sts"] not in (evaluate_checkpoint(a)["sts"],
                                                                       evaluate_checkpoint(b)["sts"])


def test_the_command_prints_the_ensembles_metrics(runs, capsys):
    _, (a, _, b) = runs
    assert main(["evaluate", str(a), str(b)]) == 0
    sts = evaluate_checkpoint([a, b])["sts"]
    out = capsys.readouterr().out
    assert out.startswith("dev (ensemble of 2 runs): sst ") and f"sts {sts:.4f}" in out


def test_predict_writes_an_ensembles_files_into_out_only(runs, tmp_path, capsys):
    _, (a, _, b) = runs
    before = sorted(p.name for p in (a / "predictions").iterdir())
    assert main(["predict", str(a), str(b), "--out", str(tmp_path / "ensemble")]) == 0
    written = sorted(p.name for p in (tmp_path / "ensemble").iterdir())
    assert written == ["sst-dev-output.csv", "sst-test-output.csv", "sts-dev-output.csv", "sts-test-output.csv"]
    assert sorted(p.name for p in (a / "predictions").iterdir()) == before
    with pytest.raises(ConfigError, match="--out is needed with several runs"):
        predict_checkpoint([a, b])


def test_runs_with_other_inputs_or_a_run_twice_are_refused_by_name(runs, tmp_path, capsys):
    config, (a, _, _) = runs
    longer = train(config, 1, tmp_path / "longer", max_length=24)
    assert main(["evaluate", str(a), str(longer)]) == 2
    err = capsys.readouterr().err
    assert f"{longer} and {a} cannot be evaluated together: their max_length differs (24 vs 32)" in err
    assert "Traceback" not in err
    with pytest.raises(ConfigError, match="a run is given twice"):
        evaluate_checkpoint([a, Path(str(a) + "/")])
