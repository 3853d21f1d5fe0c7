"""--device and --precision: resolution, clear errors, and a bf16 (autocast) run on the CPU."""

import json
from pathlib import Path

import attrs
import pytest
import torch

from core import trainer
from core.cli import main
from core.devices import DeviceError, cpu_has_native_bf16, resolve_device, resolve_precision

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def test_auto_device_is_cuda_when_there_is_one_else_cpu():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused_naming_the_option(name):
    with pytest.raises(DeviceError, match=rf"--device {name}: no CUDA GPU is available here"):
        resolve_device(name)


@pytest.mark.parametrize("name, message", [("mps", "only cpu and cuda"), ("tpu", "not a device")])
def test_unknown_devices_are_refused(name, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(name)


def test_precision_auto_follows_the_hardware():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert [resolve_precision(p, cpu) for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    with pytest.raises(DeviceError, match="--precision 'fp16': expected one of auto, fp32, bf16"):
        resolve_precision("fp16", cpu)


def test_a_bf16_run_multiplies_in_bf16_and_keeps_float32_weights_and_outputs(tiny_config):
    run = trainer.prepare(attrs.evolve(tiny_config, precision="bf16", epochs=1))
    assert json.loads((Path(tiny_config.output_dir) / "config.json").read_text())["precision"] == "bf16"
    dtypes = []
    query = run.model.encoder.encoder.layer[0].attention.self.query
    handle = query.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    before = query.weight.detach().clone()
    losses = trainer.train_step(run, run.sampler.plan(0)[0])
    handle.remove()
    assert set(dtypes) == {torch.bfloat16}  # the matrix multiplies ran in bf16
    assert all(p.dtype == torch.float32 for p in run.model.parameters()) and not torch.equal(before, query.weight)
    assert all(torch.isfinite(loss) for loss in losses.values())  # device tensors, read here
    best = trainer.train(run)
    assert 0.0 <= best["sst"] <= 1.0 and -1.0 <= best["sts"] <= 1.0


def test_the_saved_configuration_names_the_resolved_precision(tiny_config):
    run = trainer.prepare(attrs.evolve(tiny_config, precision="auto", epochs=1))
    saved = json.loads((Path(tiny_config.output_dir) / "config.json").read_text())["precision"]
    assert saved == run.model.precision == resolve_precision("auto", torch.device("cpu"))


@no_cuda
def test_cli_reports_a_missing_gpu_as_bad_input(capsys, tiny_config):
    code = main(["run", "--tasks", "sst", "--checkpoint", "tiny", "--limit", "8", "--device", "cuda",
                 "--data-dir", tiny_config.data_dir, "--output-dir", tiny_config.output_dir])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda: no CUDA GPU is available here" in err and "Traceback" not in err
    assert not Path(tiny_config.output_dir).exists()  # refused before anything was written
