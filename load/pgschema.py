"""A throwaway PostgreSQL schema per bench run, so runs never see each other's rows.

The server reaches it through ``search_path`` in the connection URL
(``?options=-csearch_path%3D<schema>``); migrations and telemetry then create
and write their tables there. The schema is dropped with everything in it.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

import psycopg
from psycopg import sql

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def create_schema(admin_url: str = ADMIN_URL) -> str:
    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    return name


def drop_schema(name: str, admin_url: str = ADMIN_URL) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def server_url(name: str, admin_url: str = ADMIN_URL) -> str:
    """The SQLAlchemy URL the server uses: the psycopg 3 driver, confined to the schema."""
    base = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}?options={quote(f'-csearch_path={name}', safe='')}"
