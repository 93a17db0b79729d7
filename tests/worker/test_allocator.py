"""worker.allocator: freed buffers stay with the process instead of being faulted in again on every use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Allocates, touches and frees two 8 MiB and two 24 MiB buffers 20 times, as a training step does with its
# activations, and prints the page faults per round (the kernel zeroing fresh pages each time).
PROGRAM = """
import json, resource, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
applied = None
if sys.argv[2] == "tuned":
    from worker.allocator import keep_freed_memory
    applied = [keep_freed_memory(), keep_freed_memory()]
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
per_round = {}
for mib in (8, 24):
    warm = np.ones(mib << 17); del warm
    before = faults()
    for _ in range(20):
        first = np.ones(mib << 17); second = np.ones(mib << 17); del first; del second
    per_round[mib] = (faults() - before) / 20
print(json.dumps({"applied": applied, "faults": per_round}))
"""


def _faults(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(ROOT), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    default, tuned = _faults("default"), _faults("tuned")
    assert tuned["applied"] == [
        True,
        True,
    ]  # accepted once; the second call answers the same without redoing it
    for mib, faults in tuned["faults"].items():
        # fresh pages every round by default (fewer faults than pages where the kernel maps huge pages) …
        assert default["faults"][mib] > 500, default
        # … the same pages again once tuned
        assert faults < default["faults"][mib] / 10, (mib, faults, default)
