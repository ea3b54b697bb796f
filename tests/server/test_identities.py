"""The server's identity cache: valid tokens remembered, forgotten at once on any change."""

from __future__ import annotations

import time

import pytest
from waiting import wait_until

from hpclaunch.queue import accounts, driver
from hpclaunch.server.identities import IdentityCache


@pytest.fixture
def cache(pg_queue_url):
    identities = IdentityCache(pg_queue_url)
    identities.start()
    wait_until(identities._trusted, timeout=30, what="the accounts listener")
    yield identities
    identities.stop()


def _token(url: str) -> tuple[int, str]:
    """A worker token of a new user "ann": (its ID, its secret)."""
    conn = driver.connect(url)
    try:
        accounts.add_user(conn, "ann", "g1")
        return accounts.create_token(conn, "ann", "worker")
    finally:
        conn.close()


def _lookup(url: str, secret: str):
    conn = driver.connect(url)
    try:
        return accounts.identify_until(conn, secret)
    finally:
        conn.close()


def _change(url: str, sql: str) -> None:
    conn = driver.connect(url)
    try:
        conn.execute(sql)
    finally:
        conn.close()


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE tokens SET revoked_at = 1.0",
        "UPDATE users SET group_name = 'elsewhere'",
        "DELETE FROM tokens",
    ],
)
def test_any_change_to_tokens_or_users_forgets_every_identity(pg_queue_url, cache, change):
    _, secret = _token(pg_queue_url)
    seen = cache.generation
    identity, expires_at = _lookup(pg_queue_url, secret)
    cache.put(secret, identity, expires_at, seen)
    assert cache.get(secret) == identity
    assert cache.get(secret + "x") is None  # another secret is looked up, not guessed
    _change(pg_queue_url, change)
    wait_until(lambda: cache.get(secret) is None, timeout=10, what="the change notification")


def test_a_lookup_that_raced_a_change_is_not_kept(pg_queue_url, cache):
    token_id, secret = _token(pg_queue_url)
    seen = cache.generation
    identity, expires_at = _lookup(pg_queue_url, secret)  # read before the revocation...
    _change(pg_queue_url, f"UPDATE tokens SET revoked_at = 1.0 WHERE id = {token_id}")
    wait_until(lambda: cache.generation != seen, timeout=10, what="the change notification")
    cache.put(secret, identity, expires_at, seen)  # ...arrives after it: dropped
    assert cache.get(secret) is None


def test_an_expired_token_is_not_trusted_from_the_cache(pg_queue_url, cache):
    _, secret = _token(pg_queue_url)
    identity, _ = _lookup(pg_queue_url, secret)
    cache.put(secret, identity, time.time() + 0.5, cache.generation)
    assert cache.get(secret) == identity
    time.sleep(0.6)
    assert cache.get(secret) is None


def test_nothing_is_cached_without_a_listener(pg_queue_url, tmp_path):
    _, secret = _token(pg_queue_url)
    identity, expires_at = _lookup(pg_queue_url, secret)
    stopped = IdentityCache(pg_queue_url)  # never started: nobody would hear a change
    stopped.put(secret, identity, expires_at, stopped.generation)
    assert stopped.get(secret) is None
    sqlite = IdentityCache(f"sqlite:///{tmp_path / 'q.sqlite3'}")  # no notifications there
    sqlite.start()
    sqlite.put(secret, identity, expires_at, sqlite.generation)
    assert sqlite.get(secret) is None
    sqlite.stop()


def test_a_lost_listener_forgets_and_stops_trusting_until_it_is_back(pg_queue_url, cache):
    _, secret = _token(pg_queue_url)
    identity, expires_at = _lookup(pg_queue_url, secret)
    cache.put(secret, identity, expires_at, cache.generation)
    assert cache.get(secret) == identity
    conn = driver.connect(pg_queue_url)
    killed = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query = 'LISTEN hpclaunch_accounts'"
    ).fetchall()
    conn.close()
    assert killed == [(True,)]
    wait_until(lambda: cache.get(secret) is None, timeout=10, what="the lost listener noticed")
    wait_until(cache._trusted, timeout=30, what="the listener back")
    assert cache.get(secret) is None  # forgotten: a change meanwhile would have been missed
    cache.put(secret, identity, expires_at, cache.generation)
    assert cache.get(secret) == identity
