"""The GPU path, run for real where a CUDA GPU exists (skipped elsewhere): bf16 autocast, the fused
AdamW kernel, a whole run, and resume with the CUDA random generators."""

import attrs
import pytest
import torch

from core.base import files as checkpoints
from core.build.run import prepare
from core.train.loop import train, train_step
from core.train.optim import AdamW
from tests.helpers import kill_run_at_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def cuda_config(tiny_config):
    return attrs.evolve(tiny_config, device="cuda", precision="bf16" if torch.cuda.is_bf16_supported() else "fp32")


def test_auto_picks_the_gpu_and_bf16_where_it_has_bf16(tiny_config):
    run = prepare(attrs.evolve(tiny_config, device="auto", precision="auto", epochs=1))
    assert run.model.device.type == "cuda"
    assert run.model.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")


def test_a_bf16_forward_on_the_gpu_multiplies_in_bf16_and_returns_float32(cuda_config):
    if cuda_config.precision != "bf16":
        pytest.skip("this GPU has no bf16")
    run = prepare(cuda_config)
    dtypes = []
    query = run.model.encoder.encoder.layer[0].attention.self.query
    handle = query.register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    losses = train_step(run, run.sampler.plan(0)[0])
    handle.remove()
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in run.model.parameters())
    assert all(torch.isfinite(loss) for loss in losses.values())  # device tensors, read here


def test_fused_adamw_on_the_gpu_matches_the_foreach_reference_on_the_cpu():
    torch.manual_seed(0)
    start = [torch.randn(64, 32), torch.randn(32)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(5)]
    results = {}
    for device, fused in (("cuda", True), ("cpu", False)):
        params = [p.clone().to(device).requires_grad_() for p in start]
        optimizer = AdamW(params, lr=1e-2, weight_decay=0.1, fused=fused)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.to(device)
            optimizer.step()
        results[device] = [p.detach().cpu() for p in params]
    for gpu, cpu in zip(results["cuda"], results["cpu"]):
        torch.testing.assert_close(gpu, cpu, atol=1e-6, rtol=1e-5)


def test_a_whole_run_on_the_gpu(cuda_config):
    best = train(prepare(attrs.evolve(cuda_config, epochs=1)))
    assert 0.0 <= best["sst"] <= 1.0 and -1.0 <= best["sts"] <= 1.0


@pytest.mark.integration
def test_a_killed_gpu_run_resumes_with_its_cuda_generator(cuda_config, tmp_path):
    """Dropout draws from the CUDA generator: a resume restores it exactly. The final metrics match the
    uninterrupted run's up to the GPU's own non-determinism (atomic adds in the embedding backward)."""
    assert cuda_config.dropout > 0
    reference = train(prepare(attrs.evolve(cuda_config, output_dir=str(tmp_path / "reference"))))
    killed = attrs.evolve(cuda_config, output_dir=str(tmp_path / "killed"), save_every=1)
    kill_run_at_step(killed, 5, tmp_path)  # the second epoch's second step
    saved = checkpoints.load(tmp_path / "killed" / "last.pt")["rng"]
    resumed = prepare(killed, resume=True)
    assert "cuda" in saved and torch.equal(torch.cuda.get_rng_state_all()[0], saved["cuda"][0])
    final = train(resumed)
    assert final["epoch"] == reference["epoch"] and final == pytest.approx(reference, abs=0.05)
