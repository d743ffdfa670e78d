"""Totals of closed minutes of telemetry, kept from one alert round to the next.

Rounds come every few seconds, and some rules read long windows (an hour, and
the token rule's day before it). Read whole, a round would cost more the more
traffic its longest window holds. Here a window is cut at whole UTC minutes:
a minute that ended at least ``SETTLE`` ago is read once and kept, and read
once more ``REREAD`` later, so that turns stored late (replayed from the
journal after a database outage) still count; a minute already ``REREAD`` old
when first read (the day before the token rule's hour, when the evaluator
starts) is read only once. A round reads the ragged minute at the start of
each window, the minutes due a first or second read, and once, for all the
windows that end with it, the minutes not kept yet. A window reads at most
``FIRST_READS`` minutes it has never read in a round, so the evaluator's first
rounds cost an hour of traffic each, not a day: until all of it is in, the
window raises :class:`NotReady` and its rules keep their state.

Totals add up, so a window's answer is what a read of the whole window gives,
for every turn stored within ``SETTLE`` of its time. A turn stored later counts
from its minute's second read, at most ``REREAD`` later; one stored after that
only once the evaluator starts again. Percentiles don't add up; their windows
are read whole.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterator

from sqlalchemy.engine import Engine

from spiralogic.alerting import NotReady
from spiralogic.monitoring import Totals, as_utc, totals_per_minute

MINUTE = timedelta(minutes=1)
#: a minute is kept once it ended this long ago (telemetry reaches the database within a second)
SETTLE = timedelta(seconds=20)
#: and read a second and last time once kept this long (unless it was this old when first read)
REREAD = timedelta(minutes=10)
#: the most minutes a window reads for the first time in one round
FIRST_READS = 60

#: orchestrator -> the totals of its turns
ByOrchestrator = dict[str, Totals]


@dataclass(frozen=True)
class _Kept:
    totals: ByOrchestrator
    read_at: datetime
    final: bool


class MinuteTotals:
    """Window totals for one evaluator; a minute no window used in a round is let go at the next."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._kept: dict[datetime, _Kept] = {}
        self._used: set[datetime] = set()
        self._round: datetime | None = None
        #: the minutes not kept yet at the round's time, read once for every window that ends then
        self._open: ByOrchestrator | None = None

    def window(self, since: datetime, until: datetime, orchestrator: str | None, now: datetime) -> Totals:
        """The totals of the turns with ``since <= created_at < until`` (of ``orchestrator``; None:
        all), for a round at ``now``; :class:`NotReady` while more than ``FIRST_READS`` of its
        minutes were never read."""
        since, until, now = as_utc(since), as_utc(until), as_utc(now)
        self._begin_round(now)
        first, last = _ceil_minute(since), _floor_minute(min(until, now - SETTLE))
        if first >= last:
            return _of(self._read(since, until), orchestrator)
        minutes = [first + n * MINUTE for n in range((last - first) // MINUTE)]
        self._used.update(minutes)
        due = [minute for minute in minutes if not self._fresh(minute, now)]
        unread = [minute for minute in due if minute not in self._kept]
        if len(unread) > FIRST_READS:
            for run in _runs(unread[-FIRST_READS:]):
                self._keep(run, now)
            raise NotReady(f"{len(unread) - FIRST_READS} minutes of the window still to read")
        for run in _runs(due):
            self._keep(run, now)
        parts = [self._read(since, first), *(self._kept[minute].totals for minute in minutes), self._read_end(last, until)]
        return sum((_of(part, orchestrator) for part in parts), Totals())

    def _begin_round(self, now: datetime) -> None:
        if now == self._round:
            return
        if self._round is not None:
            self._kept = {minute: kept for minute, kept in self._kept.items() if minute in self._used}
        self._used = set()
        self._open = None
        self._round = now

    def _fresh(self, minute: datetime, now: datetime) -> bool:
        kept = self._kept.get(minute)
        return kept is not None and (kept.final or now - kept.read_at < REREAD)

    def _keep(self, run: list[datetime], now: datetime) -> None:
        read = totals_per_minute(self.engine, run[0], run[-1] + MINUTE)
        for minute in run:
            final = minute in self._kept or now - (minute + MINUTE) >= REREAD
            self._kept[minute] = _Kept(read.get(minute, {}), now, final)

    def _read_end(self, since: datetime, until: datetime) -> ByOrchestrator:
        if until != self._round:
            return self._read(since, until)
        if self._open is None:
            self._open = self._read(since, until)
        return self._open

    def _read(self, since: datetime, until: datetime) -> ByOrchestrator:
        summed: dict[str, Totals] = defaultdict(Totals)
        if since < until:
            for by_orchestrator in totals_per_minute(self.engine, since, until).values():
                for name, totals in by_orchestrator.items():
                    summed[name] += totals
        return summed


def _of(totals: ByOrchestrator, orchestrator: str | None) -> Totals:
    return sum(totals.values(), Totals()) if orchestrator is None else totals.get(orchestrator, Totals())


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _ceil_minute(moment: datetime) -> datetime:
    floor = _floor_minute(moment)
    return floor if floor == moment else floor + MINUTE


def _runs(minutes: list[datetime]) -> Iterator[list[datetime]]:
    """Consecutive minutes in runs, each read with one query."""
    run: list[datetime] = []
    for minute in minutes:
        if run and minute - run[-1] != MINUTE:
            yield run
            run = []
        run.append(minute)
    if run:
        yield run
