"""Run the Alembic migrations from Python, without an alembic.ini.

The app, the tests and operators all migrate through these few functions, so
the migrations folder and URL handling live in one place.
"""

from __future__ import annotations

import io
from importlib.resources import files
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory


def migrations_dir() -> Path:
    """The migrations folder: next to the source tree, else the installed package."""
    source = Path(__file__).resolve().parent.parent / "migrations"
    if (source / "env.py").is_file():
        return source
    return Path(str(files("spiralogic_migrations")))


def alembic_config(database_url: str, output_buffer: io.StringIO | None = None) -> Config:
    """An Alembic Config for ``database_url``; ``%`` is escaped for ConfigParser."""
    config = Config(output_buffer=output_buffer)
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def offline_sql(revision: str = "head", dialect_url: str = "postgresql://") -> str:
    """The SQL that applies one revision on top of its predecessor, for applying by hand.

    ``migrations/sql/<revision>.sql`` holds this text for every revision.
    """
    config = alembic_config(dialect_url, output_buffer=io.StringIO())
    script = ScriptDirectory.from_config(config).get_revision(revision)
    span = f"{script.down_revision}:{script.revision}" if script.down_revision else script.revision
    command.upgrade(config, span, sql=True)
    return config.output_buffer.getvalue()
