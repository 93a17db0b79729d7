"""``conceptevo watch DIR``: register and place every checkpoint a trainer (Lightning, timm, Hugging Face, a
plain script) writes into a folder, as it appears (issue 16).

A file is taken only once it is completely written: its size and modification time are unchanged between two
scans at least ``settle_s`` apart, and it loads as a state_dict that fits the architecture. A file that stays
unreadable is reported once and retried while it changes. Restarting the watcher does no double work: an epoch
already registered with the same file is skipped (its placement is only re-queued when missing, and the queue
never holds a job twice). Metrics come from a ``history.json`` beside the checkpoints when there is one.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from backend.store import Snapshot
from worker.errors import ConceptEvoError
from worker.models.checkpoints import check_fits, epoch_of, read_checkpoint
from worker.models.registry import build_model
from worker.tracker import SNAPSHOT_METRICS, RunFeed

log = logging.getLogger(__name__)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression of a ``--pattern`` such as ``epoch_{epoch}.pt`` or ``ckpt-{epoch:03d}.pth``.

    Args:
        pattern: a file name with one ``{epoch}`` placeholder (a format spec after ``:`` is ignored).

    Returns:
        A regex whose group 1 is the epoch's digits.

    Raises:
        ConceptEvoError: no ``{epoch}``, more than one, or a path separator in the pattern.
    """
    parts = re.split(r"\{epoch(?::[^}]*)?\}", pattern)
    if len(parts) != 2 or "/" in pattern:
        raise ConceptEvoError(
            f"--pattern {pattern!r} must be a file name with exactly one {{epoch}}, e.g. 'epoch_{{epoch}}.pt'"
        )
    return re.compile(re.escape(parts[0]) + r"(\d+)" + re.escape(parts[1]) + r"\Z")


@dataclass
class _Seen:
    """A candidate file's last observed size and mtime, when it was first seen so, and whether it was reported."""

    size: int
    mtime_ns: int
    since: float
    reported: bool = False


class Watcher:
    """Watch ``folder`` for checkpoints of one run and feed them (see the module docstring).

    Args:
        folder: the folder a trainer writes checkpoints into.
        feed: the run's :class:`~worker.tracker.RunFeed` (its ``run_dir`` should be ``folder``).
        pattern: file-name pattern with ``{epoch}``; None accepts the names :func:`epoch_of` knows.
        settle_s: a file must be unchanged for this long before it is read.
        poll_s: seconds between scans in :meth:`run`.
    """

    def __init__(
        self,
        folder: str | Path,
        feed: RunFeed,
        pattern: str | None = None,
        settle_s: float = 1.0,
        poll_s: float = 2.0,
    ) -> None:
        self.folder = Path(folder).expanduser().resolve()
        if not self.folder.is_dir():
            raise ConceptEvoError(
                f"watch: {self.folder} is not a directory; create it or name the trainer's folder"
            )
        self.feed = feed
        self.regex = pattern_regex(pattern) if pattern else None
        self.settle_s, self.poll_s = settle_s, poll_s
        self._seen: dict[Path, _Seen] = {}
        self._done: dict[int, str] | None = None
        self._model = None

    def _epoch(self, name: str) -> int | None:
        if name.startswith("."):
            return None  # hidden files are temporaries of atomic writers
        if self.regex is None:
            return epoch_of(name)
        match = self.regex.match(name)
        return int(match.group(1)) if match else None

    def _registered(self) -> dict[int, str]:
        """Epoch → checkpoint path of the run's snapshots already in the store (read once)."""
        if self._done is None:
            run_id = self.feed.register()
            with self.feed.store.session(readonly=True) as session:
                rows = session.execute(
                    select(Snapshot.epoch, Snapshot.checkpoint_path).where(Snapshot.run_id == run_id)
                ).all()
            self._done = {int(e): p for e, p in rows}
        return self._done

    def scan(self) -> list[int]:
        """Look once: feed every new, complete checkpoint.

        Returns:
            The epochs fed in this scan, ascending.
        """
        done = self._registered()
        now = time.monotonic()
        ready: list[tuple[int, Path]] = []
        for path in sorted(self.folder.iterdir()):
            epoch = self._epoch(path.name)
            if epoch is None or not path.is_file():
                continue
            if done.get(epoch) == str(path):
                continue
            stat = path.stat()
            seen = self._seen.get(path)
            if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                self._seen[path] = _Seen(stat.st_size, stat.st_mtime_ns, now)
                continue
            if now - seen.since >= self.settle_s and self._loadable(path, seen):
                ready.append((epoch, path))
        history = self._history()
        fed = []
        for epoch, path in sorted(ready):
            metrics = {k: history.get(epoch, {}).get(k) for k in SNAPSHOT_METRICS}
            self.feed.add_epoch(epoch, path, metrics)
            done[epoch] = str(path)
            self._seen.pop(path, None)
            fed.append(epoch)
            log.info("run %r: epoch %d registered from %s", self.feed.run, epoch, path.name)
        return fed

    def _loadable(self, path: Path, seen: _Seen) -> bool:
        try:
            state, _meta = read_checkpoint(path)
            if self._model is None:
                self._model = build_model(self.feed.arch, self.feed.num_classes, **self.feed.model_kwargs)
            check_fits(self._model, state, path, self.feed.arch)
        except ConceptEvoError as exc:
            if not seen.reported:
                self.feed.echo(f"watch: not taking {path.name} yet: {exc}")
                seen.reported = True
            return False
        return True

    def _history(self) -> dict[int, dict]:
        path = self.folder / "history.json"
        try:
            rows = json.loads(path.read_text())
            return {int(row["epoch"]): row for row in rows}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # absent, or being rewritten: metrics stay unknown for now

    def run(self, stop: threading.Event | None = None, once: bool = False) -> int:
        """Scan every ``poll_s`` until ``stop`` is set or Ctrl-C (or after one settled pass with ``once``).

        Returns:
            The number of epochs fed.
        """
        stop = stop or threading.Event()
        fed = 0
        self.feed.register()
        try:
            while not stop.is_set():
                fed += len(self.scan())
                if once and all(seen.reported for seen in self._seen.values()):
                    break
                stop.wait(self.settle_s if once else self.poll_s)
        except KeyboardInterrupt:
            self.feed.echo("watch: stopping (Ctrl-C)")
        finally:
            self.feed.stop()
        return fed
