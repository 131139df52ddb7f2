"""The HTTP side of `serve`: a Starlette app whose routes turn JSON requests into `Workspace` calls.

Blocking work (reading a case, saving) runs in Starlette's thread pool and model work on the `Engine` thread,
so the event loop only waits. Every error leaves as JSON `{"error": message}` with a status code — 400 bad
input, 404 no such case/object/job, 409 superseded or cancelled, 413 too large, 500 anything else (its
traceback goes to the server's log only with -v). Pixels and labels go out as raw little-endian arrays with
their shape in headers. Imports Starlette (the `[serve]` extra); never torch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from importlib import resources

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import Cancelled, InputError, ModelError
from .engine import Job, Superseded
from .guard import BodyTooLarge, Guard
from .library import NotFound
from .workspace import Workspace

__all__ = ["create_app"]

log = logging.getLogger("repmedsam_ov")

_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}


class _BadRequest(Exception):
    pass


def _api(handler):
    """Wrap a route: errors become JSON with their status; nothing leaks a traceback."""
    async def endpoint(request: Request):
        try:
            return await handler(request)
        except (InputError, _BadRequest) as e:
            return _error(400, str(e))
        except NotFound as e:
            return _error(404, str(e))
        except Superseded:
            return _error(409, "superseded: a newer request for this object replaced this one.")
        except Cancelled:
            return _error(409, "cancelled.")
        except BodyTooLarge as e:
            return _error(413, str(e))
        except ModelError as e:
            return _error(500, f"the model failed: {e}")
        except Exception as e:  # never a traceback to the client
            log.error("serve: %s %s failed: %s: %s", request.method, request.url.path, type(e).__name__, e)
            log.debug("details", exc_info=True)
            return _error(500, f"internal error ({type(e).__name__}); see the server's log.")
    return endpoint


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


async def _body(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest("request body: not JSON.") from None
    if not isinstance(body, dict):
        raise _BadRequest("request body: expected a JSON object.")
    return body


def _int(value, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise _BadRequest(f"{name} {value!r}: expected a whole number.") from None


def _raw(array: np.ndarray) -> Response:
    array = np.ascontiguousarray(array)
    shape = ",".join(str(n) for n in array.shape)
    return Response(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(),
                    media_type="application/octet-stream", headers={"X-Shape": shape, "X-Dtype": array.dtype.name})


def create_app(workspace: Workspace, token: str, info: dict | None = None):
    """The ASGI app serving `workspace`, behind the token `Guard`. info: facts shown by the page (model, output)."""
    ws = workspace

    def state(case_id: str) -> dict:
        annotation = ws.annotation(case_id)
        with annotation.lock:
            return {"objects": [o.describe() for o in annotation.objects], "version": annotation.version,
                    "can_undo": annotation.can_undo}

    async def await_job(job: Job, case_id: str) -> dict:
        result = await asyncio.wrap_future(job.future)
        reply = await run_in_threadpool(state, case_id)
        if hasattr(result, "describe"):
            reply["object"] = result.describe()
        return reply

    async def index(request: Request):
        page = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("__TOKEN__", token))

    async def static(request: Request):
        name = request.path_params["name"]
        if name not in _STATIC:
            raise NotFound(f"no file {name!r}.")
        return Response(resources.files(__package__).joinpath("static", name).read_bytes(), media_type=_STATIC[name])

    async def list_cases(request: Request):
        return JSONResponse({"cases": [e.describe() for e in ws.library.entries], "info": info or {}})

    async def open_case(request: Request):
        case_id = request.path_params["case"]
        case = await run_in_threadpool(ws.open, case_id)
        return JSONResponse({**case.describe(), **await run_in_threadpool(state, case_id)})

    async def pixels(request: Request):
        case = await run_in_threadpool(ws.open, request.path_params["case"])
        z = _int(request.path_params["z"], "slice")
        if not 0 <= z < case.shape[0]:
            raise NotFound(f"no slice {z}; the case has {case.shape[0]}.")
        return _raw(case.slice_pixels(z))

    async def labels(request: Request):
        case_id = request.path_params["case"]
        z = _int(request.path_params["z"], "slice")
        annotation = await run_in_threadpool(ws.annotation, case_id)
        if not 0 <= z < annotation.shape[0]:
            raise NotFound(f"no slice {z}; the case has {annotation.shape[0]}.")
        only = request.query_params.get("object")
        with annotation.lock:
            if only is None:
                return _raw(annotation.labels(z, z + 1)[0])
            obj = ws.find_object(annotation, _int(only, "object"))
        out = np.zeros(annotation.shape[1:], np.uint16 if obj.label > 255 else np.uint8)
        if obj.mask is not None:
            obj.mask.paint(out[None], obj.label, z)
        return _raw(out)

    async def objects(request: Request):
        return JSONResponse(await run_in_threadpool(state, request.path_params["case"]))

    async def add_object(request: Request):
        case_id, body = request.path_params["case"], await _body(request)
        label = None if body.get("label") is None else _int(body["label"], "label")
        job = await run_in_threadpool(ws.segment_object, case_id, None, body.get("box"), body.get("z"), label)
        return JSONResponse(await await_job(job, case_id))

    async def change_object(request: Request):
        case_id, body = request.path_params["case"], await _body(request)
        obj_id = _int(request.path_params["obj"], "object")
        if "label" in body:
            annotation = await run_in_threadpool(ws.annotation, case_id)
            with annotation.lock:
                ws.find_object(annotation, obj_id)
                annotation.update(obj_id, label=_int(body["label"], "label"))
        if "box" in body:
            job = await run_in_threadpool(ws.segment_object, case_id, obj_id, body["box"], body.get("z"))
            return JSONResponse(await await_job(job, case_id))
        return JSONResponse(await run_in_threadpool(state, case_id))

    async def delete_object(request: Request):
        case_id, obj_id = request.path_params["case"], _int(request.path_params["obj"], "object")
        annotation = await run_in_threadpool(ws.annotation, case_id)
        with annotation.lock:
            ws.find_object(annotation, obj_id)
            annotation.remove(obj_id)
        return JSONResponse(await run_in_threadpool(state, case_id))

    async def walk(request: Request):
        case_id, body = request.path_params["case"], await _body(request)
        job = await run_in_threadpool(ws.walk_object, case_id, _int(request.path_params["obj"], "object"),
                                      _int(body.get("z_min"), "z_min"), _int(body.get("z_max"), "z_max"))
        return JSONResponse(job.snapshot(), 202)

    async def file_boxes(request: Request):
        job = await run_in_threadpool(ws.run_file_boxes, request.path_params["case"])
        return JSONResponse(job.snapshot(), 202)

    async def undo(request: Request):
        case_id = request.path_params["case"]
        annotation = await run_in_threadpool(ws.annotation, case_id)
        with annotation.lock:
            if not annotation.undo():
                raise _BadRequest("nothing to undo.")
        return JSONResponse(await run_in_threadpool(state, case_id))

    async def save(request: Request):
        case_id = request.path_params["case"]
        path = await run_in_threadpool(ws.save, case_id)
        return JSONResponse({"saved": path, **await run_in_threadpool(state, case_id)})

    async def load(request: Request):
        case_id = request.path_params["case"]
        await run_in_threadpool(ws.load, case_id)
        return JSONResponse(await run_in_threadpool(state, case_id))

    async def window(request: Request):
        case_id, body = request.path_params["case"], await _body(request)
        if not isinstance(body.get("window"), str):
            raise _BadRequest("window: expected a name (soft-tissue, lung, bone) or \"WIDTH,LEVEL\".")
        case = await run_in_threadpool(ws.set_window, case_id, body["window"])
        return JSONResponse({**case.describe(), **await run_in_threadpool(state, case_id)})

    async def job_state(request: Request):
        job = ws.engine.job(request.path_params["job"])
        if job is None:
            raise NotFound(f"no job {request.path_params['job']!r}.")
        return JSONResponse(job.snapshot())

    async def cancel_job(request: Request):
        job = ws.engine.cancel(request.path_params["job"])
        if job is None:
            raise NotFound(f"no job {request.path_params['job']!r}.")
        return JSONResponse(job.snapshot())

    case = "/api/cases/{case}"
    routes = [
        Route("/", _api(index)),
        Route("/static/{name}", _api(static)),
        Route("/api/cases", _api(list_cases)),
        Route(case + "/open", _api(open_case), methods=["POST"]),
        Route(case + "/pixels/{z}", _api(pixels)),
        Route(case + "/labels/{z}", _api(labels)),
        Route(case + "/objects", _api(objects)),
        Route(case + "/objects", _api(add_object), methods=["POST"]),
        Route(case + "/objects/{obj}", _api(change_object), methods=["PATCH"]),
        Route(case + "/objects/{obj}", _api(delete_object), methods=["DELETE"]),
        Route(case + "/objects/{obj}/walk", _api(walk), methods=["POST"]),
        Route(case + "/file-boxes", _api(file_boxes), methods=["POST"]),
        Route(case + "/undo", _api(undo), methods=["POST"]),
        Route(case + "/save", _api(save), methods=["POST"]),
        Route(case + "/load", _api(load), methods=["POST"]),
        Route(case + "/window", _api(window), methods=["POST"]),
        Route("/api/jobs/{job}", _api(job_state)),
        Route("/api/jobs/{job}/cancel", _api(cancel_job), methods=["POST"]),
    ]

    async def not_found(request: Request, exc):
        status = getattr(exc, "status_code", 404)
        return _error(status, "method not allowed here." if status == 405 else "no such page or API route.")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return Guard(app, token)
