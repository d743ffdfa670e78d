"""The migrations build the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
import warnings
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import Session

from spiralogic import migrate
from spiralogic.playbook_queries import CACHE_HIT_RATIO, ERROR_RATE, LATENCY_DISTRIBUTION, MODE_DISTRIBUTION
from spiralogic.tables import Base, ConsciousnessTurnMeta

PLAYBOOK_REVISION = "20250901_consciousness_turn_meta"
# Oldest first, as Alembic chains them.
REVISIONS = [script.revision for script in reversed(list(ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).walk_revisions()))]
HEAD = REVISIONS[-1]
TABLE = "consciousness_turn_meta"
#: the turn table's secondary indexes once every revision is applied
HEAD_INDEXES = {"idx_ctm_user_created", "idx_ctm_top_resonance", "idx_ctm_created"}
SQL_DIR = Path(__file__).resolve().parent.parent / "migrations" / "sql"
TOP_RESONANCE_SQL = {
    "postgresql": "(resonance ->> 'top'::text)",
    "sqlite": "json_extract(resonance, '$.top')",
}

# Overrides the fixture's parameters: PostgreSQL-only SQL (->>, ?, FILTER, date_trunc).
only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def engine(database_url):
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


def index_sql(engine: sa.Engine) -> dict[str, str]:
    """Secondary index name -> its CREATE INDEX statement, from the catalog.

    The inspector does not reflect SQLite's expression indexes at all, so the
    catalog is the one place to see both indexes on both databases.
    """
    if engine.dialect.name == "postgresql":
        if not sa.inspect(engine).has_table(TABLE):
            return {}
        query = (
            "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary"
        )
    else:  # The primary key's automatic index has no SQL.
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(query), {"t": TABLE}).all())


@pytest.mark.postgres
def test_upgrade_creates_the_table_and_its_indexes(database_url, engine):
    assert migrate.current_revision(database_url) is None

    migrate.upgrade(database_url)

    inspector = sa.inspect(engine)
    assert TABLE in inspector.get_table_names()
    columns = {c["name"]: c for c in inspector.get_columns(TABLE)}
    assert list(columns) == [
        "id", "user_id", "session_id", "created_at", "orchestrator",
        "orchestrator_mode", "element", "metadata", "resonance",
    ]  # fmt: skip
    assert inspector.get_pk_constraint(TABLE)["constrained_columns"] == ["id"]
    assert columns["created_at"]["default"] is not None
    assert [name for name, c in columns.items() if c["nullable"]] == ["session_id", "element"]

    with warnings.catch_warnings():
        # SQLite's expression index is skipped by reflection; index_sql checks it.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        user_created = {i["name"]: i for i in inspector.get_indexes(TABLE)}["idx_ctm_user_created"]
    assert user_created["column_names"] == ["user_id", "created_at"]
    definitions = index_sql(engine)
    assert set(definitions) == HEAD_INDEXES
    assert "created_at DESC" in definitions["idx_ctm_user_created"]
    assert TOP_RESONANCE_SQL[engine.dialect.name] in definitions["idx_ctm_top_resonance"]

    assert migrate.current_revision(database_url) == HEAD


@pytest.mark.postgres
def test_models_and_migrations_agree(database_url, engine):
    migrate.upgrade(database_url)

    with engine.connect() as conn, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []
    # SQLite cannot reflect expression indexes, so SQLAlchemy and Alembic warn
    # that idx_ctm_top_resonance was skipped (the test above checks it from the
    # catalog). Any other warning, or any warning on PostgreSQL, is a failure.
    unexpected = [str(w.message) for w in caught if "idx_ctm_top_resonance" not in str(w.message)]
    assert unexpected == []
    if engine.dialect.name == "postgresql":
        assert caught == []


@pytest.mark.postgres
def test_downgrade_to_base_and_upgrade_again(database_url, engine):
    migrate.upgrade(database_url)

    migrate.downgrade(database_url, "base")

    assert TABLE not in sa.inspect(engine).get_table_names()
    assert index_sql(engine) == {}
    assert migrate.current_revision(database_url) is None

    migrate.upgrade(database_url)

    assert TABLE in sa.inspect(engine).get_table_names()
    assert set(index_sql(engine)) == HEAD_INDEXES
    assert migrate.current_revision(database_url) == HEAD


def test_the_playbook_table_comes_first_in_one_line_of_history():
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert REVISIONS[0] == PLAYBOOK_REVISION
    assert len(script.get_heads()) == 1


def test_every_revision_has_its_offline_sql():
    assert sorted(path.stem for path in SQL_DIR.glob("*.sql")) == REVISIONS


@pytest.mark.parametrize("revision", REVISIONS)
def test_checked_in_sql_is_the_offline_migration(revision):
    """Supabase operators apply these files, so they must not drift from the migrations."""
    with (SQL_DIR / f"{revision}.sql").open(encoding="utf-8", newline="") as checked_in:
        assert checked_in.read() == migrate.offline_sql(revision)


def test_offline_sql_creates_the_postgresql_table():
    sql = migrate.offline_sql(PLAYBOOK_REVISION)
    assert "metadata JSONB NOT NULL" in sql
    assert "CREATE INDEX idx_ctm_top_resonance ON consciousness_turn_meta ((resonance ->> 'top'));" in sql
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{PLAYBOOK_REVISION}')" in sql


@only_postgresql
def test_checked_in_sql_applies_to_postgresql(database_url, engine):
    """What the operator runs leaves the database exactly where ``upgrade`` would."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for revision in REVISIONS:
            # One statement at a time, as psql -f sends them: a string of several is one
            # implicit transaction, where CREATE INDEX CONCURRENTLY may not run.
            for statement in (SQL_DIR / f"{revision}.sql").read_text(encoding="utf-8").split(";\n\n"):
                if statement.strip():
                    conn.exec_driver_sql(statement)

    assert migrate.current_revision(database_url) == HEAD
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
    assert set(index_sql(engine)) == HEAD_INDEXES


def turn(mode: str, latency_ms: int, resonance: dict, **columns) -> ConsciousnessTurnMeta:
    return ConsciousnessTurnMeta(
        id=uuid.uuid4(),
        user_id="user-1",
        session_id="session-1",
        orchestrator="spiralogic" if mode == "canary" else "baseline",
        orchestrator_mode=mode,
        meta={"latencyMs": latency_ms},
        resonance=resonance,
        **columns,
    )


@only_postgresql
def test_playbook_monitoring_queries_run_unchanged(database_url, engine):
    migrate.upgrade(database_url)
    three_days_ago = datetime.now(timezone.utc) - timedelta(days=3)
    with Session(engine) as session, session.begin():
        # One transaction, so the server-side now() puts them in the same minute.
        session.add_all([
            turn("canary", 50, {"cache_hit": True, "top": "sage"}),
            turn("canary", 120, {"top": "sage"}),
            turn("canary", 900, {"error": "timeout"}),
            turn("baseline", 100, {"cache_hit": True, "top": "fire"}),
            turn("baseline", 300, {}),
            # Outside every query's time window: must not count anywhere.
            turn("canary", 5000, {"cache_hit": True, "error": "old"}, created_at=three_days_ago),
        ])  # fmt: skip

    with engine.connect() as conn:
        latency = conn.exec_driver_sql(LATENCY_DISTRIBUTION).mappings().all()
        modes = conn.exec_driver_sql(MODE_DISTRIBUTION).mappings().all()
        cache = conn.exec_driver_sql(CACHE_HIT_RATIO).mappings().all()
        errors = conn.exec_driver_sql(ERROR_RATE).mappings().all()

    assert [(r["p50"], r["p95"], r["p99"]) for r in latency] == [(120, 900, 900)]
    assert [(r["mode"], r["count"], r["percentage"]) for r in modes] == [
        ("canary", 3, Decimal("60.00")),
        ("baseline", 2, Decimal("40.00")),
    ]
    assert [r["cache_hit_ratio"] for r in cache] == [Decimal("0.4")]
    assert [r["error_rate"] for r in errors] == [pytest.approx(0.2)]
