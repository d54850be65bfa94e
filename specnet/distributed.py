"""Training past one process, on the engines people already run — never a home-made scheme.

PyTorch: ``specnet train --backend torch --nproc N`` hands the command to PyTorch's own launcher,
``torch.distributed.run`` (what ``torchrun`` is), which starts N workers on this machine (and,
with ``--nnodes``/``--node-rank``/``--rdzv-endpoint``, on several). Each worker — or each worker
of an external ``torchrun … -m specnet train …`` — finds ``WORLD_SIZE``/``RANK`` in its
environment, joins the process group (gloo on CPU, nccl on GPU) and trains a
``DistributedDataParallel`` model. Every rank draws the same global batch order from
(seed, epoch) and takes its contiguous share of each global batch, so the global batch is the
spec's ``batch_size`` whatever N is, and the gradient DDP averages is the single-process one.
Only rank 0 writes the run directory, logs and checkpoints. A worker that dies makes the
launcher stop the others; the command then fails with exit 1 and says so.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from specnet._frameworks import require
from specnet.errors import RuntimeFailure, UsageError

__all__ = ["World", "broadcast", "launch", "leave", "shard", "tf_world", "world"]


@dataclass(frozen=True)
class World:
    rank: int
    size: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


SOLO = World(0, 1)


def world(device: str = "cpu") -> World:
    """This process's place in a distributed run (joining the group on first call)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SOLO
    dist = require("torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=300))
    return World(dist.get_rank(), dist.get_world_size())


def tf_world() -> World:
    """This worker's place in a Keras multi-worker run, from the standard ``TF_CONFIG``
    (worker 0 is the chief, as in TensorFlow when no ``chief`` task is listed)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = config.get("cluster", {}).get("worker", [])
    task = config.get("task", {})
    rank = int(task.get("index", 0)) if task.get("type", "worker") == "worker" else 0
    return World(rank, max(1, len(workers)))


def shard(index: Any, here: World) -> Any:
    """This rank's contiguous share of a global batch (equal sizes ±1)."""
    if here.size == 1:
        return index
    np = require("numpy")
    return np.array_split(index, here.size)[here.rank]


def broadcast(value: Any, here: World) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object, sent by torch.distributed)."""
    if here.size == 1:
        return value
    box = [value]
    require("torch.distributed").broadcast_object_list(box, src=0)
    return box[0]


def leave(here: World) -> None:
    """Wait for every rank, then leave the process group (exiting without it can abort)."""
    if here.size == 1 or "torch" not in sys.modules:
        return
    dist = require("torch.distributed")
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def launch(
    argv: Sequence[str],
    nproc: int,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
) -> int:
    """Run ``specnet <argv>`` as ``nproc`` workers under ``torch.distributed.run``."""
    require("torch")
    if nproc < 1 or nnodes < 1:
        raise UsageError("--nproc and --nnodes must be at least 1")
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1 and rdzv_endpoint is None:
        command.append("--standalone")
    else:
        if rdzv_endpoint is None:
            raise UsageError("a multi-node run needs --rdzv-endpoint HOST:PORT")
        command += [
            f"--nnodes={nnodes}",
            f"--node-rank={node_rank}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
        ]
    command += ["-m", "specnet", *argv]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": os.environ.get(
            "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc))
        ),
    }
    code = subprocess.run(command, env=env, check=False).returncode
    if code != 0:
        raise RuntimeFailure(
            f"a distributed worker failed (torch.distributed.run exited with {code}); "
            "its error is printed above, and the other workers were stopped"
        )
    return 0
