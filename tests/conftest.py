"""Shared fixtures: real databases (SQLite and PostgreSQL), a fresh app per test."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

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
