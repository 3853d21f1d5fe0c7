"""Data-parallel runs over several processes: torchrun's environment, the process group, and the few
collective operations the platform needs.

``torchrun --nproc-per-node N -m core.cli run ...`` starts N processes, each with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE`` and a rendezvous in its environment. Each joins the process group in
:func:`setup` (gloo on the CPU, nccl on CUDA GPUs, one GPU per process: ``cuda:LOCAL_RANK``), trains
its shard of every task batch (:func:`shard`) in a ``DistributedDataParallel`` model whose backward
averages the gradients, evaluates every N-th batch and gathers the outputs, and only the main process
(rank 0) writes files. Without torchrun the world is one process and every helper here does nothing.
"""

from __future__ import annotations

import contextlib
import gc
import os
from datetime import timedelta
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import attrs
import torch
import torch.distributed as dist

from core.base.errors import PlatformError

T = TypeVar("T")
TIMEOUT = timedelta(minutes=60)  # a collective waits this long for the others (an evaluation on one rank, say)


class DistributedError(PlatformError):
    """A torchrun environment this run cannot work in."""


@attrs.frozen
class World:
    """Where this process stands: its rank among ``size`` processes, its rank on its node, the backend."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_world = World()


def from_env(environ: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), not joined yet."""
    environ = os.environ if environ is None else environ
    try:
        rank, size = int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1))
        local_rank = int(environ.get("LOCAL_RANK", rank))
    except ValueError as error:
        raise DistributedError(f"torchrun environment: {error} (RANK, WORLD_SIZE and LOCAL_RANK must be integers)") \
            from None
    if size < 1 or not 0 <= rank < size:
        raise DistributedError(f"torchrun environment: RANK {rank} is not within WORLD_SIZE {size}")
    return World(rank, size, local_rank)


def setup(device: torch.device) -> World:
    """Join the process group of a torchrun world (once per process), with the backend for
    ``device``: nccl for CUDA (this process's GPU becomes ``cuda:LOCAL_RANK``), gloo for the CPU.
    A world of one process joins nothing."""
    global _world
    if dist.is_available() and dist.is_initialized():
        return _world
    env = from_env()
    if env.size == 1:
        _world = env
        return _world
    if not dist.is_available():
        raise DistributedError(f"WORLD_SIZE is {env.size}, but this torch ({torch.__version__}) has no "
                               "torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if device.index is not None:
            raise DistributedError(f"--device {device}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                                   "use --device cuda or auto")
        if env.local_rank >= torch.cuda.device_count():
            raise DistributedError(f"LOCAL_RANK {env.local_rank}: this node has {torch.cuda.device_count()} CUDA "
                                   "GPU(s); start at most that many processes per node")
        torch.cuda.set_device(env.local_rank)
    # Before the group exists: torch.distributed.nn.functional (imported by DistributedDataParallel on first
    # use) binds the default group of the moment as the default argument of ten functions. Imported once a
    # group exists, it would hold that group for good: destroy_process_group would leave it alive, with its
    # gloo threads, and a thread releasing its last collective's tensors as the interpreter shuts down
    # aborts the process ("terminate called without an active exception", SIGABRT) after a run that succeeded.
    import torch.distributed.nn  # noqa: F401

    dist.init_process_group(backend, timeout=TIMEOUT)
    _world = attrs.evolve(env, backend=backend)
    return _world


def teardown() -> None:
    """Leave the process group (at the end of a command). What the command built on the group and left in
    reference cycles (a ``DistributedDataParallel`` model holds the group) is collected first, so that
    leaving destroys the group: its threads end here, not while the interpreter shuts down."""
    global _world
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
    _world = World()


def world() -> World:
    return _world


def is_main() -> bool:
    return _world.is_main


# --------------------------------------------------------------------------------------------------
# Training: shards of a task batch, and the data-parallel model
# --------------------------------------------------------------------------------------------------


def shard(indices: Sequence[int], rank: int | None = None, size: int | None = None) -> list[int]:
    """This process's examples of a task batch: every ``size``-th, from the ``rank``-th. Batches are
    length-ordered, so the shards have similar lengths; their sizes differ by one at most. A pure
    function of the batch, so every process (and a resumed run) agrees on it."""
    rank, size = (_world.rank if rank is None else rank), (_world.size if size is None else size)
    return list(indices[rank::size])


def wrap(model: torch.nn.Module) -> torch.nn.parallel.DistributedDataParallel | None:
    """``model`` in ``DistributedDataParallel`` (its parameters broadcast from rank 0), or None in a
    world of one. Unused parameters are expected: a task batch trains its own head only."""
    if _world.size == 1:
        return None
    device_ids = [model.device.index] if model.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def seed(base: int) -> None:
    """Give each process its own random streams (dropout, SMART's noise) after the model is built
    from the common seed; nothing changes in a world of one."""
    if _world.size > 1:
        torch.manual_seed(base * 1_000_003 + 7_919 * (_world.rank + 1))


# --------------------------------------------------------------------------------------------------
# Collectives (each a no-op in a world of one)
# --------------------------------------------------------------------------------------------------


def barrier() -> None:
    if _world.size > 1:
        dist.barrier()


def broadcast_object(value: T) -> T:
    """Rank 0's ``value``, on every process."""
    if _world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's ``value``, in rank order."""
    if _world.size == 1:
        return [value]
    gathered: list[Any] = [None] * _world.size
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the processes (in place)."""
    if _world.size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on the main process only (reading or checking the run folder); its
    result, or the :class:`PlatformError` it raised, reaches every process."""
    if _world.size == 1:
        return fn(*args, **kwargs)
    result, error = None, None
    if _world.is_main:
        try:
            result = fn(*args, **kwargs)
        except PlatformError as raised:
            error = raised
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result  # type: ignore[return-value]  # what fn returned on the main process


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """The block runs on each node's first process before the others (which then read the caches
    it wrote, instead of racing to write them)."""
    if _world.size > 1 and _world.local_rank != 0:
        dist.barrier()
    yield
    if _world.size > 1 and _world.local_rank == 0:
        dist.barrier()


# --------------------------------------------------------------------------------------------------
# Evaluation: every process takes every N-th batch; the outputs are gathered in order
# --------------------------------------------------------------------------------------------------


def my_batches(count: int) -> range:
    """The batches (of ``count``) this process evaluates: every ``size``-th, from its rank."""
    return range(_world.rank, count, _world.size)


def gather_batches(outputs: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All processes' outputs of :func:`my_batches`, as one tensor in batch order: ``outputs`` holds
    this process's batches one after the other, ``sizes`` their lengths. Each batch was computed as
    one process computes it, so the result equals one process's, bit for bit."""
    if _world.size == 1:
        return outputs
    gathered = all_gather_objects((outputs.cpu(), sizes))
    pieces = [list(torch.split(out, batch_sizes)) if batch_sizes else [] for out, batch_sizes in gathered]
    ordered = [pieces[i % _world.size][i // _world.size] for i in range(sum(len(p) for p in pieces))]
    return torch.cat(ordered) if ordered else outputs


# --------------------------------------------------------------------------------------------------
# Writing: only the main process writes TensorBoard events
# --------------------------------------------------------------------------------------------------


class NullWriter:
    """A ``SummaryWriter`` that writes nothing: what ``run.writer`` is on every process but rank 0."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None
