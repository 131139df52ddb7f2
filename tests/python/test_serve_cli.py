"""`repmedsam-ov serve` as a command and its engine: the printed URL and token, the 127.0.0.1 default and the
warning for another host, exit 2 naming the extra without Starlette, usage errors, no torch in the server
process; and the engine's job semantics (one at a time, a newer job for the same object supersedes, cancel)
with plain functions for jobs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from repmedsam_ov.cli import main
from repmedsam_ov.errors import Cancelled
from repmedsam_ov.serve.engine import Engine, Superseded

from .serve_helpers import EXAMPLES

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


def _get(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serve_prints_its_url_serves_without_torch_and_stops_on_ctrl_c(toy_model_dir, tmp_path):
    script = ("import sys; sys.argv = ['repmedsam-ov'] + sys.argv[1:]; "
              "from repmedsam_ov.cli import main; code = main(); "
              "print('torch loaded' if 'torch' in sys.modules else 'no torch', flush=True); sys.exit(code)")
    process = subprocess.Popen(
        [sys.executable, "-c", script, "serve", str(EXAMPLES), "-o", str(tmp_path / "out"), "--port", "0",
         "--no-browser", "-m", str(toy_model_dir), "--precision", "f32", "--host", "127.0.0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        found = re.fullmatch(r"open (http://127\.0\.0\.2:\d+)/\?token=([A-Za-z0-9_-]{32})\n", line)
        assert found, line + process.stderr.read() if process.poll() is not None else line
        base, token = found.groups()
        assert _get(f"{base}/api/cases")[0] == 401
        status, reply = _get(f"{base}/api/cases", token)
        assert status == 200 and [c["name"] for c in reply["cases"]] == sorted(p.name for p in EXAMPLES.glob("*.npz"))
        status, opened = _get(f"{base}/api/cases/0/objects", token)
        assert status == 200 and opened["objects"] == []
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip().endswith("no torch")
    assert "warning: serving on 127.0.0.2, not only this machine" in err and "Traceback" not in err


def test_without_the_extra_serve_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "starlette", None)  # as if the [serve] extra were not installed
    assert main(["serve", str(EXAMPLES), "--no-browser"]) == 2
    assert ("serve needs Starlette and uvicorn, which are not installed (starlette is missing): "
            "pip install 'repmedsam-ov[serve]'") in capsys.readouterr().err


def test_usage_errors(tmp_path, capsys, toy_model_dir):
    assert main(["serve", str(EXAMPLES), "--token", "short", "--no-browser"]) == 2
    assert "--token: expected 8 to 128 URL-safe characters" in capsys.readouterr().err
    assert main(["serve", str(EXAMPLES), "-o", str(tmp_path / "seg.nii.gz"), "--no-browser"]) == 2
    assert "names a file; serve saves into an output folder" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing"), "--no-browser"]) == 1
    assert "missing: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["serve", str(tmp_path / "empty"), "--no-browser"]) == 1
    assert "no cases found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--port", "70000"])
    assert "expected a port number from 0 to 65535" in capsys.readouterr().err


def test_engine_runs_jobs_in_order_and_newer_jobs_supersede_older_ones():
    engine = Engine()
    gate, ran = threading.Event(), []
    try:
        def blocking(progress):
            gate.wait(10)
            ran.append("blocking")
            return "first"

        first = engine.submit(blocking, key="a")
        older = engine.submit(lambda p: ran.append("older"), key="b")
        other = engine.submit(lambda p: ran.append("other") or "other", key="c")
        newer = engine.submit(lambda p: ran.append("newer") or "newer", key="b")
        assert isinstance(older.future.exception(5), Superseded) and older.state == "superseded"
        gate.set()
        assert (first.future.result(10), other.future.result(10), newer.future.result(10)) == ("first", "other", "newer")
        assert ran == ["blocking", "other", "newer"]  # in order, the superseded one never ran
        assert engine.job(newer.id).snapshot() == {"id": newer.id, "state": "done", "steps": 1, "total": 1,
                                                   "message": ""}

        started = threading.Event()

        def walk(progress):  # stops like the runtime does: at its next step once cancelled
            started.set()
            while not progress.cancelled:
                started.wait(0.01)
            raise Cancelled("the call was cancelled.")

        running = engine.submit(walk, key="w")
        started.wait(10)
        replacement = engine.submit(lambda p: "again", key="w")
        assert isinstance(running.future.exception(10), Superseded) and replacement.future.result(10) == "again"
        running = engine.submit(walk)
        started.clear()
        started.wait(10)
        engine.cancel(running.id)
        assert isinstance(running.future.exception(10), Cancelled) and running.state == "cancelled"
        failing = engine.submit(lambda p: int("x"))
        assert isinstance(failing.future.exception(10), ValueError) and failing.snapshot()["state"] == "failed"
        assert engine.cancel("nope") is None
    finally:
        gate.set()
        engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(lambda p: None)


def test_the_guard_lets_nothing_past_without_the_token():
    """The door alone, around an app that lets anything in: no token, a wrong one, another scheme, a websocket."""
    import asyncio

    from repmedsam_ov.serve.guard import Guard

    async def open_door(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"inside"})

    def call(kind: str, headers=(), query: bytes = b"") -> list[dict]:
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            sent.append(message)

        scope = {"type": kind, "path": "/", "headers": list(headers), "query_string": query}
        asyncio.run(Guard(open_door, "right-token")(scope, receive, send))
        return sent

    assert call("http")[0]["status"] == 401
    assert call("http", [(b"authorization", b"Bearer wrong-token")])[0]["status"] == 403
    assert call("http", [(b"authorization", b"Basic right-token")])[0]["status"] == 401
    start, body = call("http", query=b"token=right-token")
    assert start["status"] == 200 and body["body"] == b"inside" and (b"x-frame-options", b"DENY") in start["headers"]
    assert call("websocket", query=b"token=right-token") == [{"type": "websocket.close", "code": 1008}]


def test_serve_modules_import_without_the_extra_only_where_documented():
    """engine, library, annotation, workspace and guard need no Starlette: only app and server do."""
    script = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
              "import repmedsam_ov.serve.workspace, repmedsam_ov.serve.guard, repmedsam_ov.serve.server\n"
              "print('ok')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ})
    assert out.stdout.strip() == "ok", out.stderr
