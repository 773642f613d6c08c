"""Starts the dashboard: env/bin/python app.py [--host H] [--port P] [--projects-dir DIR]."""
import argparse
import logging
import os
import sqlite3
import signal
import socket
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server

from dashboard import DEFAULTS, create_app
from dashboard.db_check import StorageProblem
from dashboard.instance_lock import AlreadyRunning, holder_of
from dashboard.security import StartupError

TOKEN_ENV, TOKEN_FILE_ENV, TOKEN_FD_ENV = "DASHBOARD_TOKEN", "DASHBOARD_TOKEN_FILE", "_DASHBOARD_TOKEN_FD"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="The video workflow dashboard.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; any other needs DASHBOARD_TOKEN)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    parser.add_argument("--projects-dir", default="projects", help="the folder the steps work on (default projects/)")
    parser.add_argument("--config", default=DEFAULTS["WORKFLOW_CONFIG"], help="the workflow file (default config/workflow.json)")
    parser.add_argument("--logs-dir", default=DEFAULTS["LOGS_DIR"], help="where app.log and the run logs go (default logs/)")
    parser.add_argument("--database", default=DEFAULTS["DATABASE"], help="the run history (default data/runs.sqlite3)")
    return parser.parse_args(argv)


def listen(host: str, port: int) -> socket.socket:
    """Bind the socket here, so that a busy port is our one-line error, not a traceback."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def token_from_environment(may_restart: bool = True) -> str | None:
    """The access token, from DASHBOARD_TOKEN_FILE or DASHBOARD_TOKEN, kept out
    of the steps' environment and out of this process's /proc/<pid>/environ.

    A process's initial environment stays readable in /proc/<pid>/environ by
    every process of the same user, the steps included, even after the
    variable is deleted from os.environ. So when DASHBOARD_TOKEN is set, the
    dashboard starts itself again without it (same pid, same arguments),
    handing the token over through a pipe that is read and closed at once."""
    fd_text = os.environ.pop(TOKEN_FD_ENV, None)
    if fd_text is not None:
        with os.fdopen(int(fd_text), "rb") as pipe:
            return pipe.read().decode() or None
    path = os.environ.pop(TOKEN_FILE_ENV, None)  # the steps need not know where it is
    if path:
        token = Path(path).read_text(encoding="utf-8").strip()
        if not token:
            raise ValueError(f"{TOKEN_FILE_ENV}={path} is empty")
    else:
        token = os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) > 4096:
        raise ValueError("the access token is longer than 4096 characters")
    if TOKEN_ENV not in os.environ or not may_restart:  # main() called from Python: nothing to restart
        return token
    read_end, write_end = os.pipe()
    os.write(write_end, (token or "").encode())
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env[TOKEN_FD_ENV] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as exc:
        raise ValueError(f"cannot start again without {TOKEN_ENV} in the environment (so that steps cannot read "
                         f"it): {exc.strerror or exc}; give the token in {TOKEN_FILE_ENV} instead") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.projects_dir:
        # Path("") is the current folder: the steps would search the repository.
        print("error: --projects-dir is empty: name the folder of your videos", file=sys.stderr)
        return 2
    try:
        token = token_from_environment(may_restart=argv is None)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # One line per request (the pages poll and stream) would bury the useful ones.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # The port first, then the history: a second dashboard stops at a busy port
    # or at the history's lock before it could touch the first one's runs.
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        holder = holder_of(Path(args.database).resolve())
        who = f" (another dashboard, {holder}, already uses this history)" if holder else ""
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}{who}", file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{sock.getsockname()[1]}/"
    try:
        app = create_app({
            "HOST": args.host,
            "TOKEN": token,
            "PROJECTS_DIR": str(Path(args.projects_dir).resolve()),
            "WORKFLOW_CONFIG": str(Path(args.config).resolve()),
            "LOGS_DIR": str(Path(args.logs_dir).resolve()),
            "DATABASE": str(Path(args.database).resolve()),
            "ECHO_LOG": True,
            "SERVER_URL": url,
            "SUBREAPER": True,  # what a step leaves behind comes back to us (dashboard/orphans.py)
        })
    except (StartupError, AlreadyRunning, StorageProblem) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sock.close()
        return 2
    except sqlite3.Error as exc:  # e.g. held locked by another program for longer than the busy wait
        print(f"error: the history database {args.database} cannot be used now: {exc}", file=sys.stderr)
        sock.close()
        return 2
    dashboard = app.extensions["dashboard"]
    server = make_server(args.host, sock.getsockname()[1], app, threaded=True, fd=sock.fileno())

    print(f"Dashboard on {url} (projects folder {dashboard.projects_dir}); Ctrl-C stops it.",
          flush=True)

    def stop(signum, _frame):
        running = [r.step.id for r in dashboard.runner.active_runs()]
        if running:
            print(f"Stopping: ending {', '.join(running)} (recorded as interrupted)...", flush=True)
        # shutdown() waits for serve_forever to return: call it off the main thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        # Steps still running are ended and recorded as interrupted; open event streams end.
        dashboard.close()
        server.server_close()
        sock.close()
    print("Dashboard stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
