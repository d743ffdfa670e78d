"""Runs the crisis classifier off the event loop, within a wait limit and a share of the CPU.

The classifier costs milliseconds of CPU per message. Run inline, a burst of
turns would queue behind it and blow their latency budgets. So it runs on a
thread of its own (numpy and tokenizers release the GIL, so the worker's
greenlets keep going), and two limits keep it from ever costing a turn its
budget:

- a turn waits at most ``timeout_s`` for its verdict; a job that only
  reaches the front of the queue after that is dropped unrun;
- the classifier may use at most ``max_share`` of one core over time (a
  token bucket holding up to ``burst_s`` seconds of work): under a burst the
  turns beyond it are not classified.

When either limit stops a classification, ``ClassifierSkipped`` is raised and
the caller keeps the lexicon's verdict. Ordinary traffic never meets them: a
few turns a second use a few percent of a core. Verdicts are remembered by a
digest of the text (never the text itself), so a message seen again costs nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Callable, TypeVar

import gevent
from gevent.threadpool import ThreadPool

T = TypeVar("T")
#: seconds of classifier work the bucket holds: a short burst is classified in full
BURST_S = 0.25
#: verdicts remembered per worker
REMEMBERED = 4096


class ClassifierSkipped(Exception):
    """The classifier could not answer within its limits; the lexicon's verdict stands."""


class BoundedRunner:
    """``runner(classify, text)`` returns ``classify(text)`` or raises ClassifierSkipped."""

    def __init__(self, timeout_s: float, max_share: float, burst_s: float = BURST_S, clock: Callable[[], float] = time.monotonic):
        self._pool = ThreadPool(1)  # one at a time: classifications queue rather than compete for the cores
        self._timeout_s = timeout_s
        self._share = max_share
        self._burst_s = burst_s
        self._clock = clock
        # Written by the classifier thread only; the greenlets only read it, so no lock is needed
        # (and a threading lock is a gevent lock in a patched worker, unusable from that thread).
        self._spent_s = 0.0
        self._allowed_s = burst_s
        self._refilled_at = clock()
        self._verdicts: OrderedDict[bytes, T] = OrderedDict()

    def __call__(self, classify: Callable[[str], T], text: str) -> T:
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        if key in self._verdicts:
            self._verdicts.move_to_end(key)
            return self._verdicts[key]
        result = self._classify(classify, text)
        self._verdicts[key] = result
        if len(self._verdicts) > REMEMBERED:
            self._verdicts.popitem(last=False)
        return result

    def _classify(self, classify: Callable[[str], T], text: str) -> T:
        if not self._take_turn():
            raise ClassifierSkipped
        deadline = self._clock() + self._timeout_s
        try:
            result = self._pool.spawn(self._job, classify, text, deadline).get(timeout=self._timeout_s)
        except gevent.Timeout:
            result = None
        if result is None:
            raise ClassifierSkipped
        return result

    def _take_turn(self) -> bool:
        """Refill the bucket for the time passed; is there work left to spend?"""
        now = self._clock()
        refill = self._share * (now - self._refilled_at)
        self._allowed_s = min(self._allowed_s + refill, self._spent_s + self._burst_s)
        self._refilled_at = now
        return self._allowed_s > self._spent_s

    def _job(self, classify: Callable[[str], T], text: str, deadline: float) -> T | None:
        started = self._clock()
        if started >= deadline:
            return None  # nobody waits for this answer any more
        try:
            return classify(text)
        finally:
            self._spent_s += self._clock() - started
