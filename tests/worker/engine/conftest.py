"""Fixtures of the semantic-space tests: ONE session-scoped fitted UMAP shared by every test.

umap-learn pays a numba JIT warm-up in every fresh process. Measured on this 2-core machine shared with other
jobs: fit 18 s (idle-ish) to 39 s (load 10), plus 6–16 s more for the first ``transform`` (see the log line
``UMAP fixture: …``). Fitting once per session keeps it out of the other tests.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny convolutions run far faster on one thread than on two contended ones (a shared 2-core box)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fitted_projection():
    """A :class:`worker.engine.projection.Projection` fitted on 3 well-separated synthetic clusters.

    Returns:
        ``(projection, base_vectors (120, 8) float32, labels (120,))``.
    """
    from worker.engine.projection import fit_projection

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (3, 8))
    labels = np.repeat(np.arange(3), 40)
    base = (centres[labels] + rng.normal(0, 0.3, (120, 8))).astype(np.float32)
    t0 = time.perf_counter()
    proj = fit_projection(base, seed=0)
    t1 = time.perf_counter()
    proj.transform(base[:2])  # the first transform JIT-compiles more numba code: pay it here too
    t2 = time.perf_counter()
    log.warning("UMAP fixture: fit %.1f s, first transform %.1f s (numba warm-up included)", t1 - t0, t2 - t1)
    proj.fit_seconds = t1 - t0  # type: ignore[attr-defined]
    proj.first_transform_seconds = t2 - t1  # type: ignore[attr-defined]
    return proj, base, labels
