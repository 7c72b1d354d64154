"""`python -m speech batch ... --ray auto|ADDRESS`: the same batch on a Ray cluster.

Ray Data maps the file list over an actor pool: each actor is a `speech.batch.Worker` that loads
the models once, and each recording's record comes back to the driver, which writes every file
(`speech.batch._Writer`), exactly as in a local run. Every node must see the input files at the
same paths (a shared filesystem or the same copy on every node) and have this package installed
(`pip install ".[cluster]"`); the output folder is only written on the driver's machine.

Ray is optional: `pip install "korean-speech[cluster]"` (ray[data]).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Iterator

from .batch import Item, Job, Worker

log = logging.getLogger("speech")


class RayWorker:
    """A Ray Data callable class: one batch of {"id", "path"} rows -> {"id", "record" (JSON)}."""

    def __init__(self, job: dict):
        job = {k: tuple(v) if isinstance(v, list) else v for k, v in job.items()}
        self.worker = Worker(Job(**job))

    def __call__(self, batch: dict) -> dict:
        ids, records = [], []
        for rid, path in zip(batch["id"], batch["path"]):
            ids.append(str(rid))
            # JSON text, so Arrow never has to find one schema for records with and without analysis.
            records.append(json.dumps(self.worker({"id": str(rid), "path": str(path)}), ensure_ascii=False))
        return {"id": ids, "record": records}


def connect(address: str):
    try:
        import ray
    except ImportError as e:
        raise ImportError('--ray needs Ray: pip install "ray[data]" (or this package\'s "cluster" extra)') from e
    if not log.isEnabledFor(logging.INFO):
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if not ray.is_initialized():
        # auto: RAY_ADDRESS or the cluster `ray start` made on this machine, else a new local instance.
        ray.init(address=None if address == "auto" else address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    return ray


def ray_records(todo: list[Item], job: Job, jobs: int, address: str) -> Iterator[tuple[Item, dict]]:
    ray = connect(address)
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    by_id = {it.id: it for it in todo}
    # One block per recording and one recording in flight per actor: Ray Data's default queues
    # several on the first actor that is ready, which leaves the others idle on long recordings.
    ds = ray.data.from_items([asdict(it) for it in todo], override_num_blocks=len(todo))
    pool = ray.data.ActorPoolStrategy(size=max(1, jobs), max_tasks_in_flight_per_actor=1)
    ds = ds.map_batches(RayWorker, fn_constructor_kwargs={"job": asdict(job)}, batch_size=1, compute=pool,
                        num_cpus=job.threads)
    for r in ds.iter_rows():
        yield by_id[r["id"]], json.loads(r["record"])
