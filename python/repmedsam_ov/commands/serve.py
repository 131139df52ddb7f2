"""`repmedsam-ov serve`: open files and folders in the browser and segment them interactively (the `[serve]`
extra). Builds the case library and the one model, binds the socket, prints the URL with its token, opens the
browser, serves until Ctrl-C. The server itself lives in `repmedsam_ov.serve`; Starlette and uvicorn are
imported only after the extra is checked.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..errors import UsageError
from ..segmenter import PRECISIONS
from ._args import positive_int

log = logging.getLogger("repmedsam_ov")


def register(sub) -> None:
    p = sub.add_parser("serve", help="segment files interactively in the browser (the [serve] extra)",
                       description="Serve npz cases, medical volumes, DICOM series and 2D images to a page in the "
                                   "browser: draw a box, see the mask; save label maps as `infer` writes them.")
    p.add_argument("paths", nargs="*", default=["."], metavar="PATH",
                   help="case or image files, DICOM series folders, or folders of them (default: .)")
    p.add_argument("-o", "--output", default="segs", metavar="DIR",
                   help="folder the labels are saved to, one file per case named as `infer` names it (default: segs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; anything else warns)")
    p.add_argument("--port", type=_port, default=8765, help="TCP port (default 8765; 0 = any free port)")
    p.add_argument("--token", help="access token (default: a new random one each start); 8+ URL-safe characters")
    p.add_argument("--no-browser", action="store_true", help="print the URL only; do not open a browser")
    p.add_argument("-m", "--model", metavar="MODEL",
                   help="a bundled model's name or an exported model folder, as infer's -m (default: the bundled default)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help="runtime precision, as infer's --precision")
    p.add_argument("-t", "--threads", type=positive_int, metavar="N", help="inference threads (default: all cores)")
    p.add_argument("-b", "--boxes", metavar="FILE|DIR", help="box file or folder, as infer's --boxes")
    p.add_argument("--box-space", choices=("voxel", "world"), help="box file coordinates, as infer's --box-space")
    p.add_argument("--modality", choices=("auto", "ct", "mr", "pet", "other", "none"), default="auto",
                   help="volume intensities, as infer's --modality")
    p.add_argument("--window", default="soft-tissue", metavar="NAME|W,L",
                   help="initial CT window, as infer's --window (the page can change it per case)")
    p.add_argument("--max-voxels", type=positive_int, metavar="N",
                   help="refuse inputs declaring more than N values, as infer's --max-voxels")
    p.set_defaults(func=run)


def _port(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return int(text)


def run(args) -> int:
    from ..serve.guard import new_token, valid_token
    from ..serve.server import LOCAL_HOSTS, StackMissing, bind, check_stack, url_host

    try:
        check_stack()
    except StackMissing as e:
        raise UsageError(str(e)) from None
    if args.token is not None and not valid_token(args.token):
        raise UsageError("--token: expected 8 to 128 URL-safe characters (letters, digits, '.', '_', '~', '-').")
    from ..cases import file_options
    from ..engines import make_engine
    from ..serve.app import create_app
    from ..serve.engine import Engine
    from ..serve.library import Library
    from ..serve.server import run as serve_forever
    from ..serve.workspace import Workspace

    library = Library(args.paths, args.output)
    options = file_options(len(library.entries), boxes=args.boxes, box_space=args.box_space, modality=args.modality,
                           window=args.window, max_voxels=args.max_voxels)
    segmenter = make_engine(f"runtime-{args.precision}", args.model and Path(args.model), None, args.threads).segmenter
    sock = bind(args.host, args.port)
    if args.host not in LOCAL_HOSTS:
        log.warning("warning: serving on %s, not only this machine: anyone who reaches it with the token can read "
                    "the served files and write to %s, and the token travels unencrypted (no TLS).", args.host,
                    library.output)
    token = args.token or new_token()
    port = sock.getsockname()[1]
    url = f"http://{url_host(args.host)}:{port}/?token={token}"
    info = {"model": str(segmenter.model_dir), "precision": segmenter.precision, "output": str(library.output)}
    engine = Engine()
    app = create_app(Workspace(library, segmenter, options, engine), token, info)
    log.warning("repmedsam-ov serve: %d case%s, labels saved to %s/ (%s, %s)", len(library.entries),
                "" if len(library.entries) == 1 else "s", library.output, info["precision"], info["model"])
    print(f"open {url}", flush=True)
    log.warning("Ctrl-C stops the server.")
    if not args.no_browser:
        threading.Timer(0.5, _open_browser, (url,)).start()
    try:
        serve_forever(app, sock, args.verbose)
    except KeyboardInterrupt:  # uvicorn finishes open requests, then passes Ctrl-C on: the normal way to stop
        pass
    finally:
        engine.close()
        sock.close()
    log.warning("repmedsam-ov serve: stopped")
    return 0


def _open_browser(url: str) -> None:
    import webbrowser

    try:
        webbrowser.open(url)
    except Exception as e:  # no browser here: the printed URL is enough
        log.warning("could not open a browser (%s); open the URL above yourself.", e)
