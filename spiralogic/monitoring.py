"""Monitoring queries over the turn telemetry, on PostgreSQL and SQLite.

Every query takes an engine or connection, a window ``since <= created_at <
until`` (UTC; a naive datetime is taken as UTC) and an optional
``orchestrator``. Time buckets are UTC minutes or hours.

The playbook's four queries (``spiralogic/playbook_queries.py``) hard-code
``NOW() - INTERVAL ...``; here the same SQL takes the window as parameters. On
PostgreSQL percentiles are ``percentile_disc ... WITHIN GROUP`` and key
presence is ``resonance ? 'key'``, as in the playbook. SQLite has no percentile
function: there the values are fetched and ranked in Python the way
``percentile_disc`` ranks them (nearest rank), so both databases give the same
numbers. Percentiles are always taken over all the rows of a bucket or window,
never averaged from smaller buckets.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from itertools import groupby
from operator import itemgetter
from typing import Any, Callable, Iterator, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from spiralogic.tables import ConsciousnessTurnMeta, Feedback

TURNS = ConsciousnessTurnMeta.__table__
FEEDBACK = Feedback.__table__
LATENCY = TURNS.c.metadata["latencyMs"].as_integer()
FIRST_TOKEN = TURNS.c.metadata["firstTokenMs"].as_integer()
QUALITY = TURNS.c.metadata["qualityScore"].as_float()
WORLDVIEW = TURNS.c.metadata["worldview"].as_string()
CHALLENGE = TURNS.c.metadata["challenge"].as_string()
COMPLETION_TOKENS = TURNS.c.metadata[("tokens", "completion")].as_integer()
PROMPT_TOKENS = TURNS.c.metadata[("tokens", "prompt")].as_integer()
#: a turn records tokens when it has completion or prompt tokens; a missing one counts as 0
TOKENS_RECORDED = sa.or_(COMPLETION_TOKENS.is_not(None), PROMPT_TOKENS.is_not(None))
TOKENS = sa.func.coalesce(COMPLETION_TOKENS, 0) + sa.func.coalesce(PROMPT_TOKENS, 0)
#: an Aggregate's percentiles: latency P50 and P95, first token P95
AGGREGATE_PERCENTILES = ((LATENCY, (0.5, 0.95)), (FIRST_TOKEN, (0.95,)))
#: how to truncate SQLite's stored 'YYYY-MM-DD HH:MM:SS.ffffff' text: the characters kept, what replaces the rest
#: (cutting the text costs a third of what strftime's parse and format did, per row)
SQLITE_TRUNCATE = {"minute": (16, ":00"), "hour": (13, ":00:00")}
SPANS_PER_QUERY = 400
DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Bind = Engine | Connection


class WindowError(ValueError):
    """A window parameter that cannot be used; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


# -- Results -----------------------------------------------------------------


@dataclass(frozen=True)
class LatencyMinute:
    minute: datetime
    p50: int | None
    p95: int | None
    p99: int | None


@dataclass(frozen=True)
class ModeShare:
    mode: str
    count: int
    #: percent of the window's turns, rounded half up to 2 places like the playbook's ROUND(numeric, 2)
    percentage: float


@dataclass(frozen=True)
class CacheHour:
    hour: datetime
    turns: int
    cache_hits: int
    cache_hit_ratio: float


@dataclass(frozen=True)
class ErrorMinute:
    minute: datetime
    turns: int
    errors: int
    error_rate: float


@dataclass(frozen=True)
class FirstTokenMinute:
    minute: datetime
    p95: int | None


@dataclass(frozen=True)
class FallbackMinute:
    minute: datetime
    turns: int
    fallbacks: int
    fallback_rate: float


@dataclass(frozen=True)
class ChallengeAcceptance:
    challenged: int
    with_feedback: int
    accepted: int
    #: accepted / with_feedback; None without feedback on any challenged turn
    acceptance_rate: float | None


@dataclass(frozen=True)
class WorldviewShare:
    worldview: str
    turns: int
    #: of the window's turns with a recorded worldview
    share: float
    compared: int
    matched: int
    match_rate: float | None


@dataclass(frozen=True)
class WorldviewAdaptation:
    turns: int
    recorded: int
    recorded_share: float | None
    compared: int
    matched: int
    match_rate: float | None
    by_worldview: tuple[WorldviewShare, ...]


@dataclass(frozen=True)
class OrchestratorTokens:
    orchestrator: str
    responses: int
    avg_tokens: float


@dataclass(frozen=True)
class OrchestratorQuality:
    orchestrator: str
    turns: int
    scored: int
    mean: float | None


class _Shares:
    """The shares of a span's turns that had an error, a fallback or a cache hit; None for no turns."""

    count: int
    errors: int
    fallbacks: int
    cache_hits: int

    @property
    def error_rate(self) -> float | None:
        return _ratio(self.errors, self.count)

    @property
    def fallback_rate(self) -> float | None:
        return _ratio(self.fallbacks, self.count)

    @property
    def cache_hit_ratio(self) -> float | None:
        return _ratio(self.cache_hits, self.count)


@dataclass(frozen=True)
class Aggregate(_Shares):
    """What the promotion gates read from a span of turns."""

    count: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    first_token_p95_ms: float | None = None
    errors: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    quality_scored: int = 0
    quality_mean: float | None = None


@dataclass(frozen=True)
class Totals(_Shares):
    """The counts and sums of a span of turns: unlike percentiles, two spans' totals add up."""

    count: int = 0
    errors: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    quality_scored: int = 0
    quality_sum: float = 0.0
    #: turns that record completion or prompt tokens, and their tokens (a missing one counts as 0)
    token_responses: int = 0
    tokens: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(*(getattr(self, name) + getattr(other, name) for name in TOTALS_FIELDS))

    @property
    def quality_mean(self) -> float | None:
        return _ratio(self.quality_sum, self.quality_scored)

    @property
    def tokens_per_response(self) -> float | None:
        return _ratio(self.tokens, self.token_responses)

    def aggregate(self, ranked: tuple | None = None) -> Aggregate:
        """As an :class:`Aggregate`, with ``ranked`` its (latency P50, P95, first token P95)."""
        p50, p95, first_token_p95 = ranked or (None, None, None)
        return Aggregate(
            count=self.count,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            first_token_p95_ms=first_token_p95,
            errors=self.errors,
            fallbacks=self.fallbacks,
            cache_hits=self.cache_hits,
            quality_scored=self.quality_scored,
            quality_mean=self.quality_mean,
        )


TOTALS_FIELDS = tuple(field.name for field in fields(Totals))


# -- The playbook's four ------------------------------------------------------


def latency_per_minute(bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None) -> list[LatencyMinute]:
    """P50, P95 and P99 of ``latencyMs`` per minute (the playbook's Latency Distribution)."""
    with _connection(bind) as conn:
        grouping = _by_time(conn, "minute", _Scope.of(since, until, orchestrator))
        ranked = _percentiles(conn, grouping, [(LATENCY, (0.5, 0.95, 0.99))])
    return [LatencyMinute(as_utc(minute), *values) for minute, values in sorted(ranked.items())]


def mode_distribution(bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None) -> list[ModeShare]:
    """Turns per ``orchestrator_mode``, most first, with their percentage (the playbook's Mode Distribution)."""
    count = sa.func.count()
    query = (
        sa.select(TURNS.c.orchestrator_mode, count)
        .where(*_Scope.of(since, until, orchestrator).conditions())
        .group_by(TURNS.c.orchestrator_mode)
        .order_by(count.desc(), TURNS.c.orchestrator_mode)
    )
    with _connection(bind) as conn:
        rows = conn.execute(query).all()
    total = sum(n for _, n in rows)
    # Decimal, rounded half up: the playbook's ROUND(numeric, 2), not binary float rounding.
    return [ModeShare(mode, n, float((Decimal(n * 100) / total).quantize(Decimal("0.01"), ROUND_HALF_UP))) for mode, n in rows]


def cache_hit_ratio_per_hour(bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None) -> list[CacheHour]:
    """Share of turns with ``resonance.cache_hit`` per hour (the playbook's Cache Hit Ratio)."""
    with _connection(bind) as conn:
        counts = _totals(conn, _by_time(conn, "hour", _Scope.of(since, until, orchestrator)))
    return [CacheHour(as_utc(hour), c.count, c.cache_hits, c.cache_hit_ratio) for hour, c in sorted(counts.items())]


def error_rate_per_minute(bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None) -> list[ErrorMinute]:
    """Share of turns with ``resonance.error`` per minute (the playbook's Error Rate)."""
    with _connection(bind) as conn:
        counts = _totals(conn, _by_time(conn, "minute", _Scope.of(since, until, orchestrator)))
    return [ErrorMinute(as_utc(minute), c.count, c.errors, c.error_rate) for minute, c in sorted(counts.items())]


# -- Beyond the playbook's queries --------------------------------------------


def first_token_p95_per_minute(
    bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None
) -> list[FirstTokenMinute]:
    """P95 of ``firstTokenMs`` per minute (the First Token gate's measure)."""
    with _connection(bind) as conn:
        ranked = _percentiles(conn, _by_time(conn, "minute", _Scope.of(since, until, orchestrator)), [(FIRST_TOKEN, (0.95,))])
    return [FirstTokenMinute(as_utc(minute), p95) for minute, (p95,) in sorted(ranked.items())]


def fallback_rate_per_minute(
    bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None
) -> list[FallbackMinute]:
    """Share of turns answered in fallback mode per minute."""
    with _connection(bind) as conn:
        counts = _totals(conn, _by_time(conn, "minute", _Scope.of(since, until, orchestrator)))
    return [FallbackMinute(as_utc(minute), c.count, c.fallbacks, c.fallback_rate) for minute, c in sorted(counts.items())]


def challenge_acceptance(bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None) -> ChallengeAcceptance:
    """Shadow-work engagement: of the challenged turns (``metadata.challenge`` set) that got
    feedback, the share whose feedback has ``accepted_challenge`` true. Feedback that left
    ``accepted_challenge`` unset counts as feedback, not as acceptance."""
    joined = TURNS.outerjoin(FEEDBACK, FEEDBACK.c.turn_id == TURNS.c.id)
    query = (
        sa.select(
            sa.func.count(),
            sa.func.count(FEEDBACK.c.id),
            sa.func.count().filter(FEEDBACK.c.accepted_challenge == sa.true()),
        )
        .select_from(joined)
        .where(CHALLENGE.is_not(None), *_Scope.of(since, until, orchestrator).conditions())
    )
    with _connection(bind) as conn:
        challenged, with_feedback, accepted = conn.execute(query).one()
    return ChallengeAcceptance(challenged, with_feedback, accepted, _ratio(accepted, with_feedback))


def worldview_adaptation(bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None) -> WorldviewAdaptation:
    """How the window's turns were adapted to a worldview.

    - ``recorded``: turns with ``metadata.worldview``; ``recorded_share`` = recorded / turns.
    - per worldview, ``share``: its turns / recorded turns.
    - ``compared``: recorded turns whose user has an earlier turn (any time before, any
      orchestrator) with a recorded worldview; ``matched``: those whose worldview equals
      that user's most recent earlier one; ``match_rate`` = matched / compared. A stable
      framing that flips from turn to turn shows as a low match rate.
    """
    earlier = TURNS.alias("earlier")
    earlier_worldview = earlier.c.metadata["worldview"].as_string()
    previous = (
        sa.select(earlier_worldview)
        .where(earlier.c.user_id == TURNS.c.user_id, earlier.c.created_at < TURNS.c.created_at, earlier_worldview.is_not(None))
        .order_by(earlier.c.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    turns = (
        sa.select(WORLDVIEW.label("worldview"), previous.label("previous"))
        .where(*_Scope.of(since, until, orchestrator).conditions())
        .subquery()
    )
    query = sa.select(
        turns.c.worldview,
        sa.func.count(),
        sa.func.count(turns.c.previous),
        sa.func.count().filter(turns.c.previous == turns.c.worldview),
    ).group_by(turns.c.worldview)
    with _connection(bind) as conn:
        rows = conn.execute(query).all()
    return _worldview_report(rows)


def tokens_per_response(bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None) -> list[OrchestratorTokens]:
    """Average ``tokens.completion + tokens.prompt`` per response, by orchestrator, over the
    turns that record at least one of them (a missing one counts as 0)."""
    query = (
        sa.select(TURNS.c.orchestrator, sa.func.count(), sa.func.avg(TOKENS))
        .where(TOKENS_RECORDED, *_Scope.of(since, until, orchestrator).conditions())
        .group_by(TURNS.c.orchestrator)
        .order_by(TURNS.c.orchestrator)
    )
    with _connection(bind) as conn:
        return [OrchestratorTokens(name, n, float(mean)) for name, n, mean in conn.execute(query)]


def quality_by_orchestrator(
    bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None
) -> list[OrchestratorQuality]:
    """Mean ``qualityScore`` (0..1) by orchestrator, with how many turns were scored."""
    query = (
        sa.select(TURNS.c.orchestrator, sa.func.count(), sa.func.count(QUALITY), sa.func.avg(QUALITY))
        .where(*_Scope.of(since, until, orchestrator).conditions())
        .group_by(TURNS.c.orchestrator)
        .order_by(TURNS.c.orchestrator)
    )
    with _connection(bind) as conn:
        return [OrchestratorQuality(name, n, scored, _float(mean)) for name, n, scored, mean in conn.execute(query)]


def totals_per_minute(bind: Bind, since: datetime, until: datetime) -> dict[datetime, dict[str, Totals]]:
    """Each UTC minute's :class:`Totals` by orchestrator, for the minutes with turns in the window."""
    per_minute: dict[datetime, dict[str, Totals]] = defaultdict(dict)
    with _connection(bind) as conn:
        grouping = _by_time(conn, "minute", _Scope.of(since, until, None))
        query = (
            sa.select(grouping.key, TURNS.c.orchestrator, *_totals_columns(conn))
            .where(*grouping.where)
            .group_by(grouping.key, TURNS.c.orchestrator)
        )
        for minute, orchestrator, *values in conn.execute(query):
            per_minute[as_utc(minute)][orchestrator] = _as_totals(values)
    return dict(per_minute)


def window_aggregate(bind: Bind, since: datetime, until: datetime, orchestrator: str | None = None) -> Aggregate:
    """The gates' measures over the whole window: percentiles over all of its rows."""
    return span_aggregates(bind, [(since, until)], orchestrator)[0]


def span_aggregates(bind: Bind, spans: Sequence[tuple[datetime, datetime]], orchestrator: str | None = None) -> list[Aggregate]:
    """One :class:`Aggregate` per ``(since, until)`` span, in one pass; spans may overlap.

    A span without turns gets an empty aggregate (count 0). For counts alone,
    :func:`totals_per_minute` adds up: ranking every value is most of the cost.
    """
    aggregates = []
    with _connection(bind) as conn:
        # Spans are a UNION ALL of one-row selects; SQLite allows 500 terms in a compound select.
        for first in range(0, len(spans), SPANS_PER_QUERY):
            grouping = _by_spans(spans[first : first + SPANS_PER_QUERY], orchestrator)
            totals = _totals(conn, grouping)
            ranked = _percentiles(conn, grouping, AGGREGATE_PERCENTILES)
            chunk = range(min(SPANS_PER_QUERY, len(spans) - first))
            aggregates += [totals[n].aggregate(ranked[n]) if n in totals else Aggregate() for n in chunk]
    return aggregates


# -- Named metrics (CLI and admin API) ----------------------------------------


@dataclass(frozen=True)
class Metric:
    query: Callable[..., Any]
    #: the playbook's window for its own queries; the last day for slower signals
    default_since: timedelta


METRICS: dict[str, Metric] = {
    "latency": Metric(latency_per_minute, timedelta(hours=2)),
    "modes": Metric(mode_distribution, timedelta(days=1)),
    "cache": Metric(cache_hit_ratio_per_hour, timedelta(hours=24)),
    "errors": Metric(error_rate_per_minute, timedelta(hours=1)),
    "first-token": Metric(first_token_p95_per_minute, timedelta(hours=1)),
    "fallback": Metric(fallback_rate_per_minute, timedelta(hours=1)),
    "challenges": Metric(challenge_acceptance, timedelta(days=1)),
    "worldview": Metric(worldview_adaptation, timedelta(days=1)),
    "tokens": Metric(tokens_per_response, timedelta(days=1)),
    "quality": Metric(quality_by_orchestrator, timedelta(days=1)),
}


def parse_duration(text: str, field: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d``, ``1w``."""
    match = DURATION.match(text)
    if not match:
        raise WindowError(field, f"{field}: expected a duration like 15m, 2h or 1d, got {text!r}")
    try:
        return timedelta(**{UNITS[match[2]]: int(match[1])})
    except OverflowError:
        raise WindowError(field, f"{field}: {text!r} is too long") from None


def parse_moment(text: str, now: datetime, field: str) -> datetime:
    """A duration before ``now`` (``2h``) or an ISO 8601 time (UTC when it names no zone)."""
    if DURATION.match(text):
        try:
            return now - parse_duration(text, field)
        except OverflowError:
            raise WindowError(field, f"{field}: {text!r} reaches before year 1") from None
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise WindowError(field, f"{field}: expected a duration like 2h or an ISO 8601 time, got {text!r}") from None


def resolve_window(name: str, since: str | None, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The window a request names; ``since`` defaults to the metric's own window before ``until``."""
    end = parse_moment(until, now, "until") if until else as_utc(now)
    start = parse_moment(since, now, "since") if since else end - METRICS[name].default_since
    if start >= end:
        raise WindowError("since", "since must be before until")
    return start, end


def as_json(value: Any) -> Any:
    """Results as JSON values: camelCase keys, ISO 8601 times."""
    if is_dataclass(value):
        return {_camel(f.name): as_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# -- Query building -----------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    since: datetime
    until: datetime
    orchestrator: str | None

    @classmethod
    def of(cls, since: datetime, until: datetime, orchestrator: str | None) -> "_Scope":
        return cls(as_utc(since), as_utc(until), orchestrator)

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        where = [TURNS.c.created_at >= self.since, TURNS.c.created_at < self.until]
        if self.orchestrator is not None:
            where.append(TURNS.c.orchestrator == self.orchestrator)
        return where


@dataclass(frozen=True)
class _Grouping:
    """Rows of ``source`` matching ``where``, grouped by ``key``."""

    key: sa.ColumnElement[Any]
    source: sa.FromClause
    where: list[sa.ColumnElement[bool]]


def _by_time(conn: Connection, unit: str, scope: _Scope) -> _Grouping:
    """Grouped by UTC minute or hour: the playbook's date_trunc, independent of the session's time zone."""
    if conn.dialect.name == "postgresql":
        # Literal text, not parameters: GROUP BY must repeat the select's expression exactly.
        utc = sa.func.timezone(sa.literal_column("'UTC'"), TURNS.c.created_at)
        bucket = sa.func.date_trunc(sa.literal_column(f"'{unit}'"), utc)
    else:
        kept, rest = SQLITE_TRUNCATE[unit]
        bucket = sa.func.substr(TURNS.c.created_at, sa.literal_column("1"), sa.literal_column(str(kept))).concat(sa.literal_column(f"'{rest}'"))
    return _Grouping(sa.type_coerce(bucket, sa.DateTime()), TURNS, scope.conditions())


def _by_spans(spans: Sequence[tuple[datetime, datetime]], orchestrator: str | None) -> _Grouping:
    """Grouped by span number; a turn counts in every span that holds it."""
    bounds = [(as_utc(start), as_utc(end)) for start, end in spans]
    when = sa.DateTime(timezone=True)
    table = sa.union_all(
        *(
            sa.select(sa.literal(n, sa.Integer).label("n"), sa.literal(lo, when).label("lo"), sa.literal(hi, when).label("hi"))
            for n, (lo, hi) in enumerate(bounds)
        )
    ).subquery("spans")
    source = TURNS.join(table, sa.and_(TURNS.c.created_at >= table.c.lo, TURNS.c.created_at < table.c.hi))
    scope = _Scope(min(lo for lo, _ in bounds), max(hi for _, hi in bounds), orchestrator)
    return _Grouping(table.c.n, source, scope.conditions())


def _has_key(conn: Connection, key: str) -> sa.ColumnElement[bool]:
    """``resonance ? key`` on PostgreSQL (as the playbook writes it); json_type on SQLite."""
    if conn.dialect.name == "postgresql":
        return sa.type_coerce(TURNS.c.resonance, JSONB).has_key(key)
    return sa.func.json_type(TURNS.c.resonance, f'$."{key}"').is_not(None)


def _totals(conn: Connection, grouping: _Grouping) -> dict[Any, Totals]:
    query = sa.select(grouping.key, *_totals_columns(conn)).select_from(grouping.source).where(*grouping.where).group_by(grouping.key)
    return {key: _as_totals(values) for key, *values in conn.execute(query)}


def _totals_columns(conn: Connection) -> list[sa.ColumnElement[Any]]:
    """The columns of :class:`Totals`, in its order, as aggregates over a group."""
    return [
        sa.func.count(),
        sa.func.count().filter(_has_key(conn, "error")),
        sa.func.count().filter(_has_key(conn, "cache_hit")),
        sa.func.count().filter(TURNS.c.orchestrator_mode == "fallback"),
        sa.func.count(QUALITY),
        sa.func.coalesce(sa.func.sum(QUALITY), 0.0),
        sa.func.count().filter(TOKENS_RECORDED),
        sa.func.coalesce(sa.func.sum(TOKENS), 0),
    ]


def _as_totals(values: Sequence[Any]) -> Totals:
    count, errors, cache_hits, fallbacks, quality_scored, quality_sum, token_responses, tokens = values
    return Totals(count, errors, cache_hits, fallbacks, quality_scored, float(quality_sum), token_responses, int(tokens))


def _percentiles(
    conn: Connection, grouping: _Grouping, ranked: Sequence[tuple[sa.ColumnElement[Any], tuple[float, ...]]]
) -> dict[Any, tuple]:
    """``percentile_disc`` of each ``(value, fractions)`` at its fractions, per group, flattened in
    that order; None where a group has no values."""
    base = sa.select(grouping.key.label("key")).select_from(grouping.source).where(*grouping.where)
    if conn.dialect.name == "postgresql":
        query = base.add_columns(
            *(sa.func.percentile_disc(f).within_group(value) for value, fractions in ranked for f in fractions)
        )
        return {key: tuple(values) for key, *values in conn.execute(query.group_by(grouping.key))}
    # SQLite has no percentile_disc. Fetching the values once and sorting them here costs a
    # third of ranking them in SQL (row_number over a window, once per value).
    query = base.add_columns(*(value for value, _ in ranked)).order_by(grouping.key)
    picked = {}
    for key, group in groupby(conn.execute(query).all(), itemgetter(0)):
        _, *columns = zip(*group)
        ordered = [sorted(v for v in column if v is not None) for column in columns]
        picked[key] = tuple(
            nearest_rank(column, f) if column else None for column, (_, fractions) in zip(ordered, ranked) for f in fractions
        )
    return picked


def nearest_rank(ordered: Sequence, fraction: float) -> Any:
    """PostgreSQL's percentile_disc: the first value whose rank reaches ``fraction`` of the rows.

    The same float arithmetic as the server (ceil(fraction * n)), so ties at a rank boundary agree.
    """
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def _worldview_report(rows: list) -> WorldviewAdaptation:
    recorded_rows = [row for row in rows if row[0] is not None]
    recorded = sum(row[1] for row in recorded_rows)
    shares = tuple(
        WorldviewShare(name, n, n / recorded, compared, matched, _ratio(matched, compared))
        for name, n, compared, matched in sorted(recorded_rows, key=lambda row: (-row[1], row[0]))
    )
    compared = sum(share.compared for share in shares)
    matched = sum(share.matched for share in shares)
    total = sum(row[1] for row in rows)
    return WorldviewAdaptation(total, recorded, _ratio(recorded, total), compared, matched, _ratio(matched, compared), shares)


@contextmanager
def _connection(bind: Bind) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as conn:
        yield conn


def as_utc(moment: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)
