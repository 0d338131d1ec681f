"""Which storage a home's Dagster instance uses: SQLite files (one machine) or PostgreSQL (several).

`realsyn instance` edits the home's dagster.yaml through this module. SQLite is the default: no
storage section, so Dagster keeps runs, event log and schedules in files under DAGSTER_HOME.
With `--postgres postgresql://user@host:port/db` one `storage: postgres:` section holds all three
in that database, so processes on several machines share one instance. The password is never
written: the section names an environment variable (Dagster's `env:` form) that each process
reads when it opens the instance.

The file is edited as text, one top-level section at a time, so a user's own sections and
comments stay as they are; after each edit the result is parsed again and must equal the old
configuration with only the storage changed (else nothing is written). An existing storage
section (`storage`, `run_storage`, `event_log_storage`, `schedule_storage`) that realsyn did not
write is replaced only with `force`: switching storage leaves the old runs behind.
PyYAML (already a Dagster dependency) cannot write back comments, and one top-level section is
all that changes, hence the text edit rather than a round-trip YAML library.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from realsyn_assets.core.io import atomic_write_bytes

STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
DEFAULT_PASSWORD_ENV = "REALSYN_PG_PASSWORD"
MARKER = "written by `realsyn instance`"
CONNECT_TIMEOUT_S = 10
DRIVER_SCHEME = "postgresql+psycopg2"

_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class InstanceConfigError(Exception):
    """A dagster.yaml that cannot be changed as asked, or a database that cannot be reached."""


@dataclass(frozen=True)
class PostgresTarget:
    """One PostgreSQL database; the password comes from the environment variable
    `password_env` (None: none in the config, libpq's PGPASSWORD or ~/.pgpass apply)."""

    hostname: str
    port: int
    username: str
    db_name: str
    password_env: str | None = DEFAULT_PASSWORD_ENV
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str, password_env: str | None = DEFAULT_PASSWORD_ENV) -> PostgresTarget:
        """Parse `postgresql://user@host[:port]/db[?param=value...]`; a password in the URL is
        refused (it would end up on disk)."""
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise InstanceConfigError(f"not a postgresql:// URL: {url!r}")
        if parts.password is not None:
            raise InstanceConfigError(
                "the URL holds a password, which would be written to dagster.yaml; drop it "
                f"from the URL and set ${password_env or DEFAULT_PASSWORD_ENV} instead"
            )
        try:
            port = parts.port or 5432
        except ValueError as exc:
            raise InstanceConfigError(f"bad port in {url!r}: {exc}") from None
        db_name = unquote(parts.path.lstrip("/"))
        missing = [
            name
            for name, value in (
                ("user", parts.username),
                ("host", parts.hostname),
                ("database", db_name),
            )
            if not value
        ]
        if missing:
            raise InstanceConfigError(f"{url!r} lacks the {', '.join(missing)}")
        if password_env is not None and not _ENV_NAME.match(password_env):
            raise InstanceConfigError(f"not an environment variable name: {password_env!r}")
        return cls(
            hostname=parts.hostname,
            port=port,
            username=unquote(parts.username),
            db_name=db_name,
            password_env=password_env,
            params=dict(parse_qsl(parts.query)),
        )

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"

    def describe(self) -> str:
        url = f"postgresql://{self.username}@{self.address}/{self.db_name}"
        source = f"${self.password_env}" if self.password_env else "PGPASSWORD or ~/.pgpass"
        return f"{url} (password from {source})"

    def section(self) -> dict:
        """The value of dagster.yaml's `storage` key."""
        db: dict = {
            "username": self.username,
            "hostname": self.hostname,
            "port": self.port,
            "db_name": self.db_name,
            # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which dagster-postgres
            # does not install; psycopg2 is its declared driver.
            "scheme": DRIVER_SCHEME,
        }
        if self.password_env:
            db["password"] = {"env": self.password_env}
        if self.params:
            db["params"] = dict(self.params)
        return {"postgres": {"postgres_db": db}}

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None

    @classmethod
    def from_section(cls, storage: dict) -> PostgresTarget | None:
        """The target of a `storage` value in the form `section()` writes, else None."""
        db = (
            (storage.get("postgres") or {}).get("postgres_db")
            if isinstance(storage, dict)
            else None
        )
        if not isinstance(db, dict):
            return None
        password = db.get("password")
        env = password.get("env") if isinstance(password, dict) else None
        return cls(
            hostname=str(db.get("hostname")),
            port=int(db.get("port", 5432)),
            username=str(db.get("username")),
            db_name=str(db.get("db_name")),
            password_env=env,
            params=dict(db.get("params") or {}),
        )


# -- reading ----------------------------------------------------------------------------------
def _load(text: str, config: Path) -> dict:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InstanceConfigError(f"{config} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InstanceConfigError(f"{config} does not hold a mapping of sections")
    return data


def describe_storage(config: Path) -> str:
    """One line: which storage the instance of this dagster.yaml uses."""
    data = _load(config.read_text(), config) if config.exists() else {}
    present = [key for key in STORAGE_KEYS if key in data]
    if not present:
        return f"sqlite: files under {config.parent} (the single-machine default)"
    storage = data.get("storage")
    if isinstance(storage, dict) and len(storage) == 1:
        kind, value = next(iter(storage.items()))
        target = PostgresTarget.from_section(storage)
        if target is not None:
            return f"postgres: {target.describe()}"
        if kind == "postgres" and isinstance(value, dict) and "postgres_url" in value:
            return "postgres: postgres_url (see dagster.yaml)"
        if kind == "sqlite" and isinstance(value, dict):
            return f"sqlite: files under {value.get('base_dir')}"
        return f"{kind} (see {config})"
    return f"custom ({', '.join(present)} in {config})"


def postgres_target(config: Path) -> PostgresTarget | None:
    """The database of a dagster.yaml written for PostgreSQL, else None."""
    if not config.exists():
        return None
    storage = _load(config.read_text(), config).get("storage")
    return PostgresTarget.from_section(storage) if isinstance(storage, dict) else None


# -- editing ----------------------------------------------------------------------------------
def _segments(text: str) -> list[tuple[str | None, str]]:
    """Split a YAML file into top-level sections (key, text) and the lines between them (None,
    text): a key line at column 0 with its indented or `- ` lines after it."""
    segments: list[tuple[str | None, str]] = []
    for line in text.splitlines(keepends=True):
        match = _TOP_KEY.match(line)
        inner = line.startswith((" ", "\t", "- ")) or line.rstrip("\r\n") == "-"
        if match:
            segments.append((match.group(1), line))
        elif inner and segments and segments[-1][0] is not None:
            key, body = segments[-1]
            segments[-1] = (key, body + line)
        else:
            segments.append((None, line))
    return segments


def _storage_block(target: PostgresTarget | None) -> str:
    if target is None:
        return ""
    body = yaml.safe_dump({"storage": target.section()}, sort_keys=False, default_flow_style=False)
    lines = body.splitlines(keepends=True)
    comment = f"  # {MARKER} --postgres: runs, event log and schedules, shared by every process\n"
    return lines[0] + comment + "".join(lines[1:])


def _conflicts(segments, data: dict, target: PostgresTarget | None) -> list[str]:
    """Storage sections in the way of `target` (None = SQLite default) that realsyn did not
    write and that differ from what would be written."""
    wanted = target.section() if target is not None else None
    found = []
    for key, body in segments:
        if key not in STORAGE_KEYS or MARKER in body:
            continue
        if key == "storage" and data.get("storage") == wanted:
            continue
        found.append(key)
    return found


def set_storage(config: Path, target: PostgresTarget | None, force: bool = False) -> bool:
    """Make `config` use `target`'s database (None: the SQLite default); returns whether the
    file changed. Sections other than storage stay byte for byte."""
    from realsyn_assets.pipeline import ensure_dagster_yaml, instance_lock

    ensure_dagster_yaml(config)
    with instance_lock(config.parent):
        text = config.read_text()
        data = _load(text, config)
        segments = _segments(text)
        conflicts = _conflicts(segments, data, target)
        if conflicts and not force:
            raise InstanceConfigError(
                f"{config} already configures {', '.join(conflicts)} (not written by realsyn); "
                "the runs stored there would be left behind. Remove the section yourself, or "
                "rerun with --force to replace it"
            )
        kept = [(key, body) for key, body in segments if key not in STORAGE_KEYS]
        head = "".join(body for _, body in kept)
        if head and not head.endswith("\n"):
            head += "\n"
        new = head + _storage_block(target)
        expected = {k: v for k, v in data.items() if k not in STORAGE_KEYS}
        if target is not None:
            expected["storage"] = target.section()
        if _load(new, config) != expected:
            raise InstanceConfigError(
                f"could not change the storage of {config} without touching its other "
                "sections (unusual YAML layout); edit its storage section by hand"
            )
        if new == text:
            return False
        atomic_write_bytes(config, new.encode())
        return True


# -- checking ---------------------------------------------------------------------------------
def check_connection(target: PostgresTarget) -> None:
    """Connect once, or raise InstanceConfigError naming the server and the cause."""
    import psycopg2

    if target.password_env and target.password_env not in os.environ:
        raise InstanceConfigError(
            f"${target.password_env} is not set: every process that opens the instance reads "
            "the database password from it (set it, empty if the server needs none, or pass "
            "--password-env '' to leave the password to libpq's PGPASSWORD or ~/.pgpass)"
        )
    try:
        conn = psycopg2.connect(
            host=target.hostname,
            port=target.port,
            user=target.username,
            dbname=target.db_name,
            password=target.password(),
            connect_timeout=CONNECT_TIMEOUT_S,
            **target.params,
        )
    except psycopg2.Error as exc:
        cause = " ".join(str(exc).split()) or type(exc).__name__
        raise InstanceConfigError(
            f"cannot connect to PostgreSQL at {target.address} (database {target.db_name!r}, "
            f"user {target.username!r}): {cause}"
        ) from None
    conn.close()


def open_and_upgrade(dagster_home: Path) -> None:
    """Open the instance of dagster_home once, creating or migrating its storage schema and the
    GPU pool's limit row."""
    import dagster as dg

    from realsyn_assets.concurrency import ensure_pool_limit

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        instance.upgrade()
        ensure_pool_limit(instance)  # the GPU pool's row, before several machines race for it
    finally:
        instance.dispose()


def configure(
    dagster_home: Path, target: PostgresTarget | None, force: bool = False, verify: bool = True
) -> str:
    """Point the instance of dagster_home at `target` (None: SQLite); for PostgreSQL first check
    that the server answers, then create the schema. Returns what the instance uses now."""
    config = dagster_home / "dagster.yaml"
    if target is not None and verify:
        check_connection(target)
    set_storage(config, target, force=force)
    if verify:
        try:
            open_and_upgrade(dagster_home)
        except Exception as exc:  # noqa: BLE001 - any failure to open is reported the same way
            cause = " ".join(str(exc).split())[:500]
            raise InstanceConfigError(
                f"{config} now uses {describe_storage(config)}, but opening the instance "
                f"failed: {type(exc).__name__}: {cause}"
            ) from exc
    return describe_storage(config)


# -- `realsyn instance` -----------------------------------------------------------------------
def cmd_instance(args) -> int:
    """Print the home's instance storage, or switch it (--postgres URL / --sqlite)."""
    import sys

    from realsyn_assets.pipeline import prepare_environment

    layout = prepare_environment(args.home)
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    config = dagster_home / "dagster.yaml"
    try:
        if args.postgres is None and not args.sqlite:
            print(f"REALSYN_HOME={layout.root}\ninstance storage: {describe_storage(config)}")
            return 0
        target = None
        if args.postgres is not None:
            target = PostgresTarget.from_url(args.postgres, args.password_env or None)
        now = configure(dagster_home, target, force=args.force)
    except InstanceConfigError as exc:
        print(f"realsyn instance: {exc}", file=sys.stderr)
        return 1
    print(f"REALSYN_HOME={layout.root}\ninstance storage: {now}\nconfig: {config}")
    return 0


def add_parser(sub) -> None:
    """The `instance` subcommand of `realsyn` (sub: the CLI's subparsers)."""
    parser = sub.add_parser(
        "instance",
        help="show or set the storage of the home's Dagster instance: SQLite files under the "
        "home (default, one machine) or one PostgreSQL database shared by several machines",
    )
    parser.add_argument(
        "--home", default=None, help="output folder (default: $REALSYN_HOME or ./realsyn_home)"
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--postgres",
        metavar="URL",
        help="postgresql://user@host[:port]/db[?sslmode=...]: runs, event log and schedules in "
        "that database; checks the connection and creates the schema. No password in the URL",
    )
    choice.add_argument(
        "--sqlite", action="store_true", help="back to SQLite files under the home's dagster/"
    )
    parser.add_argument(
        "--password-env",
        default=DEFAULT_PASSWORD_ENV,
        metavar="NAME",
        help="environment variable every process reads the database password from (dagster.yaml "
        f"names it, never the password; default {DEFAULT_PASSWORD_ENV}; '' = none, libpq's "
        "PGPASSWORD or ~/.pgpass apply)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a storage section that realsyn did not write (its runs stay behind)",
    )
    parser.set_defaults(func=cmd_instance)
