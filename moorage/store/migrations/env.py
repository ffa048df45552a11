"""Alembic environment: runs migrations against the URL the Store was opened with."""

from alembic import context
from sqlalchemy import create_engine

from moorage.store.tables import Base

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
connectable = create_engine(url)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
