"""Session-wide fixtures: one small demo world built once per test session, shared by every test."""

from __future__ import annotations

import os

import pytest

# Tests never touch the network and run on the CPU; keep torch from oversubscribing 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Passive OpenMP threads: busy-waiting threads make small convolutions far slower when cores are shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def small_demo_dataset(tmp_path_factory):
    """The demo ImageFolder at ``size="small"`` (a few hundred 64×64 images), generated once."""
    from worker.demo.generate import generate_demo_data

    root = tmp_path_factory.mktemp("demo") / "dataset"
    generate_demo_data(root, size="small", seed=0)
    return root
