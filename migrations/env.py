"""Alembic environment: runs migrations online (a connection) or offline (SQL text).

The URL comes from the Config built by ``spiralogic.migrate``, so no alembic.ini
is needed. Logging is deliberately left alone: configuring it here would
replace the host application's (and pytest's caplog) handlers.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from spiralogic.tables import Base

# The models, so autogenerate can compare them with the database.
target_metadata = Base.metadata


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set; build the Config with spiralogic.migrate.alembic_config")
    return url


def run_offline() -> None:
    """Write the SQL to the output buffer instead of running it."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on a fresh connection to the database."""
    engine = sa.create_engine(_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
