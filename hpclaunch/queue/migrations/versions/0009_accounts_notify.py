"""A notification when a token or a user changes, so servers may cache identities.

PostgreSQL only: statement triggers on ``tokens`` and ``users`` (update, delete,
truncate) run ``pg_notify('hpclaunch_accounts', '')``. A server keeps the
identities of valid tokens in memory and forgets them all on this notification
(``server/identities.py``), so a revoked or changed token is refused at once
without a database lookup on every request. SQLite has no notifications: there
the server looks every token up.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION hpclaunch_notify_accounts() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('hpclaunch_accounts', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
TABLES = ("tokens", "users")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(NOTIFY_FUNCTION)
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER hpclaunch_{table}_changed AFTER UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION hpclaunch_notify_accounts()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS hpclaunch_{table}_changed ON {table}")
    op.execute("DROP FUNCTION IF EXISTS hpclaunch_notify_accounts()")
