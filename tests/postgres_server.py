"""A private, throwaway PostgreSQL server for the tests of shared studies.

``postgres_url`` (session-scoped) runs ``initdb`` in a fresh temporary folder, starts the server on a
free loopback port (its socket in the same folder), creates the database ``studies`` and yields
``postgresql://platform@127.0.0.1:PORT/studies``; the server is stopped and its folder removed at
the end. The server binaries come from Debian's ``postgresql`` package (``.ci/run`` installs it);
as root they run as the ``postgres`` user, since ``initdb`` refuses to run as root. Without the
binaries or the database driver (the ``postgres`` extra) the tests that use it are skipped, saying
which is missing; a server that is there but fails to start is an error, with its log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

USER, DATABASE = "platform", "studies"


def server_binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: the newest /usr/lib/postgresql/*/bin, else that of PATH's."""
    def version(folder: Path) -> int:
        return int(folder.parent.name) if folder.parent.name.isdigit() else 0

    folders = sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:  # through its symbolic links: a copy elsewhere may not be readable by the postgres user
        folders.append(Path(on_path).resolve().parent)
    return next((f for f in folders if (f / "initdb").exists() and (f / "pg_ctl").exists()), None)


def free_port() -> int:
    """A TCP port of the loopback address that nothing listens on (now)."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_database(url: str, name: str) -> str:
    """Create the empty database ``name`` on the server of ``url``; return its URL."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE: not in a transaction
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return engine.url.set(database=name).render_as_string(hide_password=False)


class Server:
    """One server in ``folder`` (data in ``folder/data``, log in ``folder/server.log``)."""

    def __init__(self, binaries: Path, folder: Path, account: pwd.struct_passwd | None):
        self.binaries, self.folder = binaries, folder
        self.data, self.log = folder / "data", folder / "server.log"
        self.as_user: list[str] = []
        if account is not None:
            os.chown(folder, account.pw_uid, account.pw_gid)
            self.as_user = ["runuser", "-u", account.pw_name, "--"]
        self.port = 0

    def _run(self, *command: str, timeout: float = 60) -> None:
        result = subprocess.run([*self.as_user, *command], check=False, cwd=self.folder, capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               f"\nserver log:\n{log}")

    def start(self) -> str:
        self._run(str(self.binaries / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "--no-locale",
                  "-E", "UTF8", "--no-sync")
        for attempt in range(3):  # the free port may be taken between finding and binding it
            self.port = free_port()
            options = (f"-k {self.folder} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off")
            try:
                self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                          "-w", "-t", "60", "start", timeout=90)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        return create_database(f"postgresql://{USER}@127.0.0.1:{self.port}/postgres", DATABASE)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a fresh database on a private PostgreSQL server (skips when there is none to run)."""
    from sqlalchemy.engine import make_url

    try:  # the driver that SQLAlchemy uses for postgresql:// URLs
        make_url("postgresql://").get_dialect().import_dbapi()
    except ImportError as error:
        pytest.skip(f"no database driver for postgresql:// URLs ({error}); pip install -e '.[postgres]'")
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or in /usr/lib/postgresql/*/bin; "
                    "install Debian's postgresql package (.ci/run does)")
    account = None
    if os.geteuid() == 0:  # initdb refuses root: the server runs as the postgres user
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no 'postgres' user to run the PostgreSQL server as")
    # not under pytest's tmp folder, which only its owner may enter
    folder = Path(tempfile.mkdtemp(prefix="platform-postgres-", dir="/tmp" if account else None))
    server = Server(binaries, folder, account)
    try:
        url = server.start()
        yield url
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
