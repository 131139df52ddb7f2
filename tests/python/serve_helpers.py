"""Test helpers for `serve`: a real server (uvicorn on a loopback socket, in a thread) around the package's own
app, and the cases the serve tests open, made from the example cases. Not collected as tests."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from ..conftest import REPO

EXAMPLES = REPO / "examples" / "imgs"
TOKEN = "test-token-0123456789"


@contextlib.contextmanager
def live_server(paths, output, segmenter, **options):
    """Yields the server's base URL (http://127.0.0.1:PORT); options: as `cases.file_options`."""
    import uvicorn

    from repmedsam_ov.cases import file_options
    from repmedsam_ov.serve.app import create_app
    from repmedsam_ov.serve.engine import Engine
    from repmedsam_ov.serve.library import Library
    from repmedsam_ov.serve.server import bind
    from repmedsam_ov.serve.workspace import Workspace

    library = Library([str(p) for p in paths], output)
    engine = Engine()
    workspace = Workspace(library, segmenter, file_options(len(library.entries), **options), engine)
    app = create_app(workspace, TOKEN, {"model": str(segmenter.model_dir), "precision": segmenter.precision,
                                        "output": str(output)})
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        engine.close()
        sock.close()


def write_cases(folder: Path) -> Path:
    """Served inputs: the 2D example npz; 12 slices of the 3D example as an npz; the same slices as a NIfTI whose
    axes are permuted and flipped (its box file in file voxels); a grey PNG of the 2D example with 3 boxes."""
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    shutil.copy(EXAMPLES / "2DBox_Microscopy_StarDistDSB_img2d.npz", folder / "nuclei.npz")
    with np.load(EXAMPLES / "3DBox_MR_sct_t1w-cord.npz") as case:
        cord = case["imgs"][30:42].copy()
    np.savez(folder / "cord.npz", imgs=cord, boxes=np.array([[13, 34, 3, 24, 40, 6]]))
    image = sitk.Flip(sitk.PermuteAxes(sitk.GetImageFromArray(cord), [1, 0, 2]), [True, False, False])
    image.SetSpacing((0.6, 0.5, 2.0))
    sitk.WriteImage(image, str(folder / "cordx.nii.gz"))
    # the model-frame box [13, 34, 3, 24, 40, 6] in this file's (i, j, k) voxels: i = 75 - y, j = x, k = z
    (folder / "cordx.boxes.json").write_text(json.dumps({"boxes": [[75 - 40, 13, 3, 75 - 34, 24, 6]]}))
    with np.load(EXAMPLES / "2DBox_Microscopy_StarDistDSB_img2d.npz") as case:
        cv2.imwrite(str(folder / "grey.png"), case["imgs"][:, :, 0])
        (folder / "grey.boxes.json").write_text(json.dumps(case["boxes"][:3].tolist()))
    return folder
