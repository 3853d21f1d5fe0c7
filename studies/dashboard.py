"""``platform dashboard``: optuna-dashboard over a study's storage, served on localhost.

optuna-dashboard has no authentication, and its API deletes studies and trials: it is served on the
loopback address unless ``--host`` says otherwise, and then with a warning.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import sys
from pathlib import Path
from wsgiref.simple_server import WSGIServer, make_server

from studies.runner import StudyError, open_storage, safe_url


def storage_url(study: str | None, study_dir: str, storage: str | None) -> str:
    """``--storage`` if given, else the SQLite file of study NAME under ``--study-dir``."""
    if storage:
        return storage
    if not study:
        raise StudyError("name a study (its SQLite file is <study-dir>/NAME/study.db) or pass --storage URL")
    path = Path(study_dir) / study / "study.db"
    if not path.is_file():
        known = sorted(p.parent.name for p in Path(study_dir).glob("*/study.db"))
        raise StudyError(f"no study database at {path}; studies under {study_dir}: {', '.join(known) or 'none'}")
    return f"sqlite:///{path.resolve()}"


def check_address(host: str, port: int) -> list[str]:
    """Refuse a ``--port`` outside 0..65535 and a ``--host`` that does not resolve; return the
    addresses ``host`` resolves to."""
    if not 0 <= port <= 65535:
        raise StudyError(f"--port {port}: not a TCP port; give one in 0..65535 (0 picks a free one)")
    try:
        found = socket.getaddrinfo(host or None, port, socket.AF_INET, socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise StudyError(f"--host {host}: does not resolve to an IPv4 address of this machine ({reason}); "
                         "use 127.0.0.1 (this machine only) or one of its addresses") from None
    return sorted({str(address[4][0]) for address in found})


def is_loopback(addresses: list[str]) -> bool:
    return bool(addresses) and all(ipaddress.ip_address(address).is_loopback for address in addresses)


def make_dashboard(url: str, host: str = "127.0.0.1", port: int = 8080) -> WSGIServer:
    """A WSGI server of optuna-dashboard for the storage at ``url`` (not yet serving)."""
    check_address(host, port)
    try:
        import optuna_dashboard
    except ImportError:
        raise StudyError("optuna-dashboard is not installed: pip install optuna-dashboard "
                         "(or install this project with its [dashboard] extra)") from None
    app = optuna_dashboard.wsgi(open_storage(url))
    try:
        return make_server(host, port, app)
    except OSError as error:
        reason = error.strerror or str(error)
        if error.errno == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
            raise StudyError(f"--host {host}: not an address of this machine ({reason}); use 127.0.0.1 (this "
                             "machine only) or one of its addresses") from None
        raise StudyError(f"--port {port}: cannot listen on {host}:{port} ({reason})") from None


def exposure_warning(host: str, port: int) -> str | None:
    """The warning for a ``--host`` that other machines can reach (None for a loopback one)."""
    if is_loopback(check_address(host, port)):
        return None
    return (f"warning: --host {host or '0.0.0.0'} serves the dashboard beyond this machine, without authentication: "
            f"anyone who reaches port {port} can read every study of this storage and delete studies and trials "
            "(its API does); serve it on 127.0.0.1 and reach it through an SSH tunnel "
            f"(ssh -L {port}:127.0.0.1:{port} HOST) instead")


def serve(study: str | None, study_dir: str, storage: str | None, host: str, port: int) -> None:
    url = storage_url(study, study_dir, storage)
    server = make_dashboard(url, host, port)
    warning = exposure_warning(host, server.server_port)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"optuna-dashboard for {safe_url(url)}: http://{host}:{server.server_port}/dashboard/ (Ctrl-C stops it)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
