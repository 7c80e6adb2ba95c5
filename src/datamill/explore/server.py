"""Run the explorer: `serve(paths, host, port, open_browser)` (what `datamill explore` does)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .security import LOOPBACK, new_token


def serve(paths: Sequence[str | os.PathLike], host: str = "127.0.0.1", port: int = 8765,
          open_browser: bool = True) -> None:
    """Serve the workdirs `paths` until interrupted. A host other than loopback gets a random
    access token, printed in the URL."""
    import socket

    import uvicorn

    from .app import create_app

    token = None if host in LOOPBACK else new_token()
    app = create_app(paths, host=host, token=token)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # bound here so that port 0 (any free port) is known before
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"datamill explore: serving {len(paths)} workdir(s) at {url}", file=sys.stderr)
    if token:
        print("  (bound to another address than loopback: the token in the URL is required)",
              file=sys.stderr)
    print("  press Ctrl+C to stop", file=sys.stderr)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                            date_header=False, h11_max_incomplete_event_size=16 * 1024,
                            limit_concurrency=64)
    uvicorn.Server(config).run(sockets=[sock])
