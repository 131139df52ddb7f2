"""`repmedsam-ov serve`: interactive box-prompted segmentation in the browser, on this package's one model.

engine (one Segmenter, jobs off the request threads), library (which files and output paths are reachable),
opened (a case read as `infer` reads it), annotation (objects, masks, undo), workspace (all of it for the
server), guard (token, body bound, headers), app (the Starlette routes), server (uvicorn on a socket we bind)
and static/ (the page: plain HTML, CSS and JavaScript, no build step). Only app and server import the
`[serve]` extra (Starlette, uvicorn); nothing here imports torch.
"""

INSTALL = "pip install 'repmedsam-ov[serve]'"
