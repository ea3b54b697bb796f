"""Which database to use: flag > env var > connection file > SQLite default."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from hpclaunch.errors import DatabaseError, UserError
from hpclaunch.paths import ensure_home, home, private_file

ENV_URL = "HPCLAUNCH_DATABASE_URL"
ENV_FILE = "HPCLAUNCH_DATABASE_FILE"
SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgres")


def default_sqlite_path() -> Path:
    return home() / "hpclaunch.sqlite3"


def connection_file_path() -> Path:
    return home() / "database.yaml"


def resolve_database_url(explicit: str | None = None) -> str:
    """The queue URL, by the documented order of precedence."""
    if explicit:
        return check_url(explicit, source="--database")
    env = os.environ.get(ENV_URL)
    if env:
        return check_url(env, source=ENV_URL)
    file_env = os.environ.get(ENV_FILE)
    if file_env:
        return read_connection_file(Path(file_env).expanduser(), source=ENV_FILE)
    conn_file = connection_file_path()
    if conn_file.is_file():
        return read_connection_file(conn_file, source=str(conn_file))
    ensure_home()  # 0700: the default queue and the logs live in it
    url = f"sqlite:///{default_sqlite_path()}"
    prepare_sqlite(url, source="the default")
    return url


def check_url(url: str, *, source: str) -> str:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if "://" not in url or scheme not in SUPPORTED_SCHEMES:
        raise DatabaseError(
            f"unsupported database URL from {source}: {redact(url)!r}; "
            "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
        )
    if is_sqlite(url):
        prepare_sqlite(url, source=source)
    return url


def prepare_sqlite(url: str, *, source: str) -> None:
    """A usable SQLite path, its file created 0600 (whatever the umask) before first use.

    ``sqlite://relative.db`` (two slashes) is a mistake for ``sqlite:///relative.db``;
    a missing or read-only folder is one line, not a driver traceback.
    """
    if not url.lower().startswith("sqlite:///"):
        raise DatabaseError(
            f"{redact(url)!r} (from {source}) has no file path: write sqlite:///PATH "
            "(three slashes) for a relative path, sqlite:////abs/path for an absolute one"
        )
    path = Path(sqlite_path(url)).expanduser()
    folder = path.parent
    if not folder.is_dir():
        raise DatabaseError(
            f"the folder of the SQLite database {path} (from {source}) does not exist; "
            "create it or choose another path"
        )
    if path.exists():
        if path.is_dir():
            raise DatabaseError(f"the SQLite database {path} (from {source}) is a folder")
        return
    try:
        os.close(private_file(path))
    except OSError as exc:
        raise DatabaseError(
            f"cannot create the SQLite database {path} (from {source}): {exc.strerror}; "
            "choose a folder you can write to"
        ) from None


def read_connection_file(path: Path, *, source: str) -> str:
    """Read ``url:`` from a YAML connection file that only its owner can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DatabaseError(f"connection file {path} (from {source}) does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DatabaseError(
            f"connection file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"it may hold a password: run `chmod 600 {path}`"
        )
    from hpclaunch import yamlload

    data = yamlload.load(yamlload.read_text(path, what="connection file"), str(path))
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise UserError(f"{path}: expected a mapping with a `url:` key (a database URL)")
    unknown = sorted(set(data) - {"url"})
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; the only key is `url`")
    return check_url(data["url"], source=str(path))


# Every way libpq (and a shell environment) lets a secret ride along in a string:
#   scheme://user:SECRET@host         (URL user info, also inside DSN=... env values)
#   ?password=SECRET / &sslpassword=  (URL query parameters)
#   password=SECRET passfile=PATH     (key=value connection strings, PGPASSWORD=...)
_USERINFO = re.compile(r"(://[^\s:/@?#]*):([^\s@]*)@")
_KEYVALUE = re.compile(
    r"(?i)(?<![A-Za-z0-9])([A-Za-z_]*(?:password|passwd|passfile))(\s*=\s*)"
    r"('(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"|[^\s&'\";]+)"
)
MASK = "***"


def redact(text: str) -> str:
    """``text`` with every password form libpq accepts replaced by ``***``.

    Works on a URL, a key=value DSN, an environment assignment or a whole
    error message, so every printed string can go through it.
    """
    if not isinstance(text, str):
        return text
    text = _USERINFO.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return _KEYVALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def has_password(text: str) -> bool:
    """Does ``text`` carry a password (or a password file) in any libpq form?

    The one test behind every refusal: a profile's database URL, an ``env:``
    value of a profile, anything bound for a batch script.
    """
    return isinstance(text, str) and redact(text) != text


def is_sqlite(url: str) -> bool:
    return url.lower().startswith("sqlite")


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///PATH`` URL (``:memory:`` is refused)."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        raise DatabaseError("an in-memory SQLite database cannot be shared with workers")
    return path.split("?", 1)[0]
