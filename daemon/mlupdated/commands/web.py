"""``mlupdated web [--workspace DIR] [--host 127.0.0.1] [--port N] [--allow-remote]``:
serve the review page for a workspace."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from ..errors import ConfigError
from ..service.workspace import open_workspace
from .resolve import workspace_root

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
BACKLOG = 128
MAX_PORT = 65535


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _machine_names() -> list[str]:
    """The names and addresses this machine is reached by (``Host`` values to accept
    when remote access is allowed)."""
    names = {socket.gethostname(), socket.getfqdn()}
    names |= {f"{name}.local" for name in list(names) if "." not in name}
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        infos = []
    for info in infos:
        address = str(info[4][0])
        names.add(f"[{address}]" if ":" in address else address)
    return sorted(n for n in names if n)


def run(args: argparse.Namespace) -> int:
    """Check the options, make the token, print the login URL, serve until stopped."""
    import uvicorn

    from ..web import create_app
    from ..web.security import allowed_hosts, token_path

    host = args.host
    if not 0 <= args.port <= MAX_PORT:
        raise ConfigError(f"--port {args.port}: expected 0 to {MAX_PORT} (0: any free port)")
    remote = not is_loopback(host)
    if remote and not args.allow_remote:
        raise ConfigError(
            f"--host {host}: the page would be reachable from other machines; pass "
            "--allow-remote to mean it, or reach it over an SSH tunnel (see the README)"
        )
    workspace = open_workspace(workspace_root(args), create=False, model_path=None)
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), args.port))
        # Listening before the URL is printed: a browser that is quick queues, not fails.
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{args.port}: {exc.strerror}") from exc
    port = sock.getsockname()[1]
    extra = _machine_names() if remote else []
    app = create_app(workspace, hosts=allowed_hosts(host, port, extra=extra))
    code = app.state.web.codes.issue()
    if remote:
        print(
            f"warning: listening on {host}:{port}, reachable from other machines; anyone "
            "who can reach it still needs the login token, but traffic is not encrypted",
            file=sys.stderr,
        )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    print(f"mlupdated web: serving {workspace.root}", flush=True)
    print(f"log in once at: http://{shown}:{port}/login?code={code}", flush=True)
    print(f"(or paste the token from {token_path(workspace.state)})", flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        access_log=False,
        limit_concurrency=64,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0
