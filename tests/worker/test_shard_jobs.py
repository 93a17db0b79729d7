"""``stimuli_shard`` jobs end to end: real worker processes on one queue, one of them SIGKILLed mid-shard; the
stored partial top-k of 1 and 3 shards merge into exactly the unsharded stimuli (worker/jobs/shards.py). The
merge itself is checked with 1, 3 and 7 shards in tests/worker/engine/test_shards.py."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sqlalchemy import select

from backend.store import Run, Snapshot, get_job, list_jobs, open_store
from backend.store.jobspec import StimuliShardParams, enqueue_job
from backend.store.shards import ShardKey, StimuliShard
from tests.datadir import wait_exit, wait_for
from tests.queue_worker import LEASE_S, all_done, job_starts, start_worker
from worker.demo.plan import register_demo

BATCH, K = 32, 10


def test_shard_jobs_with_a_killed_worker_merge_into_the_unsharded_stimuli(
    tiny_demo_world, tmp_path: Path
) -> None:
    from worker.data.imagefolder import ImageFolderDataset
    from worker.jobs.shards import merged_stimuli
    from worker.models.checkpoints import load_model
    from worker.models.layers import default_layers
    from worker.pipeline import snapshot_stimuli

    url = f"sqlite:///{tmp_path / 'conceptevo.db'}"
    store = open_store(url)
    try:
        register_demo(store, tiny_demo_world)
        with store.session(readonly=True) as s:
            snapshot = s.execute(
                select(Snapshot.id, Snapshot.checkpoint_path)
                .join(Run)
                .where(Run.name == "healthy", Snapshot.epoch == 1)
            ).one()
        ids = [
            enqueue_job(
                store, StimuliShardParams(snapshot_id=snapshot.id, n_shards=n, shard=i, k=K, batch_size=BATCH)
            )[0].id
            for n in (3, 1)
            for i in range(n)
        ]
        victim = start_worker(url, tmp_path, "victim", "--real", "--pause", "120", "--max-jobs", "1")
        running = wait_for(
            lambda: next((j for j in list_jobs(store, "running") if j.progress > 0), None),
            120,
            "a shard in progress",
        )
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        time.sleep(LEASE_S + 0.5)  # the rescuers must find the victim's lease expired
        rescuers = [
            start_worker(url, tmp_path, f"rescuer{i}", "--real", "--once", lease_s=60) for i in range(2)
        ]
        for i, proc in enumerate(rescuers):
            assert wait_exit(proc, 300, tmp_path / f"rescuer{i}.log") == 0, (
                tmp_path / f"rescuer{i}.log"
            ).read_text()
        assert all_done(store, ids)
        assert (get_job(store, running.id).attempts, job_starts(tmp_path)[running.id]) == (2, 2)
        assert (
            set(job_starts(tmp_path).values()) <= {1, 2}
            and sum(job_starts(tmp_path).values()) == len(ids) + 1
        )
        with store.session(readonly=True) as s:
            rows = Counter(s.scalars(select(StimuliShard.n_shards)).all())
        assert rows == {1: 1, 3: 3}, "one partial top-k per shard"

        merged = {n: merged_stimuli(store, ShardKey(snapshot.id, n, K, BATCH)) for n in (1, 3)}
        assert merged_stimuli(store, ShardKey(snapshot.id, 2, K, BATCH)) is None  # not computed
    finally:
        store.dispose()
    images = ImageFolderDataset(tiny_demo_world / "dataset" / "train")
    model = load_model(None, None, snapshot.checkpoint_path)
    whole = snapshot_stimuli(model, images, default_layers(model), K, BATCH)  # the one-pass job's own pass
    for n, got in merged.items():
        assert got is not None and got.n_images == whole.n_images, n
        assert got.layer_names == whole.layer_names and got.map_sizes == whole.map_sizes
        np.testing.assert_array_equal(got.indices, whole.indices, err_msg=f"{n} shards")
        np.testing.assert_array_equal(got.maxima, whole.maxima, err_msg=f"{n} shards")
        np.testing.assert_array_equal(got.argmax_yx, whole.argmax_yx, err_msg=f"{n} shards")
