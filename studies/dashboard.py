"""``platform dashboard``: optuna-dashboard over a study's storage, served on localhost."""

from __future__ import annotations

from pathlib import Path
from wsgiref.simple_server import WSGIServer, make_server

from studies.runner import StudyError, open_storage


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


def make_dashboard(url: str, host: str = "127.0.0.1", port: int = 8080) -> WSGIServer:
    """A WSGI server of optuna-dashboard for the storage at ``url`` (not yet serving)."""
    try:
        import optuna_dashboard
    except ImportError:
        raise StudyError("optuna-dashboard is not installed: pip install optuna-dashboard "
                         "(or install this project with its [dashboard] extra)") from None
    app = optuna_dashboard.wsgi(open_storage(url))
    try:
        return make_server(host, port, app)
    except OSError as error:
        raise StudyError(f"--port {port}: cannot listen on {host}:{port} ({error.strerror})") from None


def serve(study: str | None, study_dir: str, storage: str | None, host: str, port: int) -> None:
    url = storage_url(study, study_dir, storage)
    server = make_dashboard(url, host, port)
    print(f"optuna-dashboard for {url}: http://{host}:{server.server_port}/dashboard/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
