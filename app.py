"""Starts the dashboard: env/bin/python app.py [--host H] [--port P] [--projects-dir DIR]."""
import argparse
import logging
import signal
import socket
import sys
import threading
from pathlib import Path

from werkzeug.serving import make_server

from dashboard import DEFAULTS, create_app
from dashboard.security import StartupError


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


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.projects_dir:
        # Path("") is the current folder: the steps would search the repository.
        print("error: --projects-dir is empty: name the folder of your videos", file=sys.stderr)
        return 2
    # One line per request (the pages poll and stream) would bury the useful ones.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    try:
        app = create_app({
            "HOST": args.host,
            "PROJECTS_DIR": str(Path(args.projects_dir).resolve()),
            "WORKFLOW_CONFIG": str(Path(args.config).resolve()),
            "LOGS_DIR": str(Path(args.logs_dir).resolve()),
            "DATABASE": str(Path(args.database).resolve()),
            "ECHO_LOG": True,
        })
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dashboard = app.extensions["dashboard"]
    try:
        sock = listen(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        dashboard.close()
        return 2
    server = make_server(args.host, sock.getsockname()[1], app, threaded=True, fd=sock.fileno())

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Dashboard on http://{host}:{server.port}/ (projects folder {dashboard.projects_dir}); Ctrl-C stops it.",
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
