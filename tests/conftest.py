"""Shared fixtures: real databases (SQLite and PostgreSQL), a fresh app per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from tcp_proxy import TcpProxy

os.environ["SPIRALOGIC_ENV"] = "testing"

# The CI machine runs PostgreSQL here; point elsewhere with this variable.
POSTGRES_URL = os.environ.get("SPIRALOGIC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path):
    """A URL to a fresh, empty database: a SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'spiralogic.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def proxy(database_url):
    """A TCP proxy in front of the (PostgreSQL) database, for tests that cut the network."""
    with TcpProxy.before(database_url) as running:
        yield running


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite file migrated to head once per run: most tests start from a copy of it."""
    from spiralogic.migrate import upgrade

    path = tmp_path_factory.mktemp("migrated") / "head.db"
    upgrade(f"sqlite:///{path}")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")  # everything in the one file, so a copy is whole
    return path


@pytest.fixture
def make_app(tmp_path, migrated_sqlite):
    """Build fresh, migrated apps; each is closed (telemetry drained) afterwards.

    A new SQLite file is a copy of the migrated one: the same schema as migrating
    it, for a millisecond instead of a fifth of a second (test_migrations.py
    runs the migrations themselves on both databases).
    """
    from spiralogic import create_app
    from spiralogic.migrate import upgrade
    from spiralogic.state import app_state

    apps = []

    def build(database_url: str | None = None, plugins=(), **overrides):
        url = database_url or f"sqlite:///{tmp_path / 'app.db'}"
        new_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        if new_file is not None and not new_file.exists():
            shutil.copyfile(migrated_sqlite, new_file)
        else:
            upgrade(url)
        app = create_app({"database_url": url, "data_dir": str(tmp_path / "data"), **overrides}, plugins)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        state = app_state(app)
        state.telemetry.close()
        state.engine.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture
def register_plugin(app):
    """Register a throwaway plugin object on the app's plugin manager for one test."""
    from spiralogic.state import app_state

    pm = app_state(app).pm
    names = []

    def register(plugin, name=None):
        names.append(pm.register(plugin, name=name))
        return plugin

    yield register
    for name in names:
        pm.unregister(name=name)


@pytest.fixture
def chat(client):
    """POST a chat turn with the playbook's smoke-test body, overridable per call."""

    def post(headers=None, **body):
        payload = {"userId": "smoke-test", "text": "Help me find clarity", "element": "air", **body}
        return client.post("/api/oracle/chat", json=payload, headers=headers or {})

    return post


@pytest.fixture
def collector():
    """A statsd collector: a UDP socket on loopback that tests read metrics from."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    yield sock
    sock.close()
