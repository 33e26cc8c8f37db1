"""Alembic environment: runs migrations on the URL handed in by paymentd.migrate."""

from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.get_main_option("sqlalchemy.url")
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, transactional_ddl=True)
    with context.begin_transaction():
        # One migrator at a time when several processes start together.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7283910)")
        context.run_migrations()
engine.dispose()
