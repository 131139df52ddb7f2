"""Running the `serve` app: the `[serve]` extra checked, a listening socket bound before anything slow (so a
taken port is reported at once), uvicorn on it until Ctrl-C. Imports uvicorn only inside `run`; never torch.
"""

from __future__ import annotations

import logging
import socket

from . import INSTALL

__all__ = ["StackMissing", "bind", "check_stack", "run", "url_host"]

log = logging.getLogger("repmedsam_ov")

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class StackMissing(ImportError):
    """Starlette or uvicorn (the `[serve]` extra) is not installed; the message says how to install it."""


def check_stack() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise StackMissing(f"serve needs Starlette and uvicorn, which are not installed ({e.name} is missing): "
                           f"{INSTALL}") from None


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one). OSError names what failed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
        sock.listen(64)
    except OSError as e:
        raise OSError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port or --host.") from None
    return sock


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run(app, sock: socket.socket, verbose: bool) -> None:
    """Serve `app` on `sock` until interrupted (uvicorn handles Ctrl-C and finishes open requests)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="info" if verbose else "warning", access_log=verbose, lifespan="off",
                            timeout_graceful_shutdown=3)
    uvicorn.Server(config).run(sockets=[sock])
