"""The research plugins together: smart + rlayer + bam on the tiny encoder, killed and resumed exactly."""

import json

import attrs
import pytest
import torch

from core.build.run import prepare
from core.build.trained import load_run
from core.train.loop import train
from tests.helpers import kill_run_at_step


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_data_dir):
    from core.experiment.config import RunConfig

    out = tmp_path_factory.mktemp("teacher") / "sst"
    config = RunConfig(tasks=("sst",), checkpoint="tiny", limit=24, batch_size=8, max_length=32, epochs=1, lr=1e-3,
                       sampler="rrobin", data_dir=str(tiny_data_dir), output_dir=str(out), threads=1)
    train(prepare(config))
    return out


def student(tiny_config, teacher, out):
    return attrs.evolve(tiny_config, tasks=("sst", "quora", "sts"), plugins=("smart", "rlayer", "bam"),
                        sampler="interleaved", output_dir=str(out), save_every=1,
                        components={"bam": {"teachers": f"sst={teacher}"}, "smart": {"weight": 2.0}})


@pytest.mark.integration
def test_all_three_compose_and_resume_exactly(tiny_config, teacher, tmp_path):
    reference = prepare(student(tiny_config, teacher, tmp_path / "reference"))
    assert set(reference.regularizers) == {"smart", "bam"}
    assert reference.model.heads["quora"].relation is reference.model.heads["sts"].relation
    expected = train(reference)

    killed = student(tiny_config, teacher, tmp_path / "killed")
    steps_per_epoch = reference.sampler.steps_per_epoch()
    kill_run_at_step(killed, steps_per_epoch + 1, tmp_path)
    resumed = prepare(killed, resume=True)
    assert resumed.epoch == 1 and resumed.step_in_epoch == 0
    assert torch.equal(next(iter(resumed.regularizers["smart"].state_dict()["teacher"].values())),
                       next(iter(torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
                                 ["regularizers"]["smart"]["teacher"].values())))
    assert train(resumed) == expected

    saved = json.loads((tmp_path / "killed" / "config.json").read_text())
    assert saved["plugins"] == ["smart", "rlayer", "bam"] and saved["components"]["smart"] == {"weight": 2.0}
    config, model, _ = load_run(tmp_path / "killed")
    assert model.heads["quora"].relation is model.heads["sts"].relation
    assert set(model.state_dict()) == set(resumed.model.state_dict())
