"""Test-only Ray worker set-up hook (`runtime_env={"worker_process_setup_hook": "tests.python.cluster_hooks.install"}`)
that lets test_cluster.py take a worker process down in the middle of a case, to test `--ray`'s failure semantics.
Nothing of it is in the package.

`install` wraps `cases._segment_one` (the per-case step) in every worker process. At each case it reads the JSON file
named by $REPMEDSAM_TEST_KILL, {"once": [file names], "always": [file names], "sleep": seconds, "log": path}: a
case named in "always" ends its process with `os._exit(1)` at every attempt, one in "once" at its first attempt
only; every case first sleeps "sleep" seconds (default 0). Each start (with the Ray node's id), kill and finished
case is appended to "log" ("start NAME NODE_ID" / "kill NAME" / "done NAME"). Without the file it does nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def _note(plan: dict, line: str) -> None:
    with open(plan["log"], "a") as f:
        f.write(line + "\n")


def install() -> None:
    from repmedsam_ov import cases

    original = cases._segment_one

    def segment_one(path, target, segment, options):
        control = os.environ.get("REPMEDSAM_TEST_KILL", "")
        plan = json.loads(Path(control).read_text()) if control and Path(control).is_file() else None
        if plan is not None:
            import ray

            name = Path(path).name
            _note(plan, f"start {name} {ray.get_runtime_context().get_node_id()}")
            time.sleep(plan.get("sleep", 0))
            killed_before = f"kill {name}" in Path(plan["log"]).read_text().split("\n")
            if name in plan.get("always", []) or (name in plan.get("once", []) and not killed_before):
                _note(plan, f"kill {name}")
                os._exit(1)
        result = original(path, target, segment, options)
        if plan is not None:
            _note(plan, f"done {Path(path).name}")
        return result

    cases._segment_one = segment_one
