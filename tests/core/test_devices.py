"""--device and --precision: resolution, clear errors, and a bf16 (autocast) run on the CPU."""

import json
from pathlib import Path

import attrs
import pytest
import torch

from core.base.devices import DeviceError, resolve_device, resolve_precision
from core.build.run import prepare
from core.cli.main import main
from core.train.loop import train, train_step

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cpu_has_bf16_by_cpuid() -> bool:
    """An oracle independent of core.devices (which reads /proc/cpuinfo): torch's own CPUID checks."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if None in checks:
        pytest.skip("this torch has no CPUID checks of AVX512-BF16 and AMX")
    return any(check() for check in checks)


def linear_output_dtypes(run) -> set[torch.dtype]:
    """The dtypes a Linear of the encoder computes in during one training step of ``run`` (whose losses
    must be finite)."""
    dtypes = set()
    query = run.model.encoder.encoder.layer[0].attention.self.query
    handle = query.register_forward_hook(lambda module, args, output: dtypes.add(output.dtype))
    try:
        losses = train_step(run, run.sampler.plan(0)[0])
        assert all(torch.isfinite(torch.as_tensor(loss)) for loss in losses.values())
    finally:
        handle.remove()
    return dtypes


@no_cuda
def test_auto_device_without_a_gpu_is_the_cpu():
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")


@needs_cuda
def test_auto_device_with_a_gpu_is_the_first_one():
    assert resolve_device("auto") == torch.device("cuda") and torch.zeros(1, device=resolve_device("auto")).is_cuda


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused_naming_the_option(name):
    with pytest.raises(DeviceError, match=rf"--device {name}: no CUDA GPU is available here"):
        resolve_device(name)


@pytest.mark.parametrize("name, message", [("mps", "only cpu and cuda"), ("tpu", "not a device")])
def test_unknown_devices_are_refused(name, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(name)


def test_an_explicit_precision_is_kept_and_an_unknown_one_refused():
    cpu = torch.device("cpu")
    assert [resolve_precision(p, cpu) for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    with pytest.raises(DeviceError, match="^--precision 'fp16': expected one of auto, fp32, bf16$"):
        resolve_precision("fp16", cpu)


def test_precision_auto_on_a_cpu_is_bf16_where_it_has_amx_or_avx512_bf16():
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if cpu_has_bf16_by_cpuid() else "fp32")


def test_a_bf16_run_multiplies_in_bf16_and_keeps_float32_weights_and_outputs(tiny_config):
    run = prepare(attrs.evolve(tiny_config, precision="bf16", epochs=1))
    assert json.loads((Path(tiny_config.output_dir) / "config.json").read_text())["precision"] == "bf16"
    query = run.model.encoder.encoder.layer[0].attention.self.query
    before = query.weight.detach().clone()
    assert linear_output_dtypes(run) == {torch.bfloat16}  # the matrix multiplies ran in bf16
    assert all(p.dtype == torch.float32 for p in run.model.parameters()) and not torch.equal(before, query.weight)
    best = train(run)
    assert 0.0 <= best["sst"] <= 1.0 and -1.0 <= best["sts"] <= 1.0


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_the_saved_precision_is_the_one_the_forward_computes_in(tiny_config, precision):
    run = prepare(attrs.evolve(tiny_config, precision=precision, epochs=1))
    saved = json.loads((Path(tiny_config.output_dir) / "config.json").read_text())["precision"]
    assert saved in ("fp32", "bf16") and saved == run.model.precision
    assert saved == "fp32" or precision == "auto"
    assert linear_output_dtypes(run) == {torch.bfloat16 if saved == "bf16" else torch.float32}


@no_cuda
def test_cli_reports_a_missing_gpu_as_bad_input(capsys, tiny_config):
    code = main(["run", "--tasks", "sst", "--checkpoint", "tiny", "--limit", "8", "--device", "cuda",
                 "--data-dir", tiny_config.data_dir, "--output-dir", tiny_config.output_dir])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda: no CUDA GPU is available here" in err and "Traceback" not in err
    assert not Path(tiny_config.output_dir).exists()  # refused before anything was written


@pytest.mark.parametrize("kind", ["single-regression", "cross-pair-regression"])
def test_bf16_regression_scores_are_computed_in_float32_not_rounded_to_bf16(data_dir, kind):
    """Under --precision bf16 the encoder runs in autocast, the head in float32: a linear regression head
    under autocast gave bfloat16 scores (8 bits of mantissa: about half of 300 predictions shared a value)."""
    from core.data.batch import Batch
    from core.data.tokenizer import Tokenizer
    from core.encoder.loading import load_encoder, resolve_checkpoint
    from core.model.multitask import MultitaskModel
    from core.tasks.files import read_rows
    from core.tasks.heads import Widths
    from core.tasks.spec import TaskSpec
    from tasks.sts import STS
    from tests.helpers import bind_tasks

    spec = TaskSpec(name="score", kind=kind, files=STS.files, label_column=STS.label_column,
                    text_columns=STS.text_columns[:1 if kind == "single-regression" else 2], label_range=(0.0, 5.0))
    task = bind_tasks(spec)["score"]
    rows = read_rows(bind_tasks(STS)["sts"], data_dir / STS.files["dev"], labelled=True).select(list(range(300)))
    source = resolve_checkpoint("tiny")
    tokenizer = Tokenizer(source.vocab, lowercase=source.lowercase)
    encoded = task.kind.encode(spec, rows.texts[:len(spec.text_columns)], tokenizer, 64)
    padded = tokenizer.pad([ids for column in encoded["sequences"] for ids in column],
                           None if "token_types" not in encoded else [t for c in encoded["token_types"] for t in c])
    batch = Batch("score", padded["input_ids"], padded["token_type_ids"], padded["attention_mask"], None, rows.ids,
                  torch.arange(300))
    outputs = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        encoder = load_encoder("tiny", seed=0)
        heads = torch.nn.ModuleDict({"score": task.build_head(Widths(128, 128), 0.0)})
        model = MultitaskModel(encoder, heads, {"score": task}, "mean", precision).eval()
        with torch.no_grad():
            outputs[precision] = model(batch).flatten()
    bf16 = outputs["bf16"]
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, bf16.bfloat16().float())  # not values bfloat16 can hold
    assert len(set(bf16.tolist())) >= 295  # one score per example, as in float32
    torch.testing.assert_close(bf16, outputs["fp32"], atol=0.05, rtol=0.0)  # only the encoder's rounding differs
