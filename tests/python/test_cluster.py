"""`repmedsam-ov infer --ray` and `cluster.segment_files` on a local Ray instance (2 CPUs, no dashboard), shared by
the tests of a session: outputs byte for byte those of plain `infer`, bad inputs reported with plain `infer`'s
lines, an actor process killed mid-case replaced and its case retried (bounded), an interrupted run resumed, and
two Ray nodes on loopback (slow). The toy model keeps the fast tests to seconds; the slow ones use the bundled
model. Skipped where Ray (the [cluster] extra) is not installed, except the checks that need no Ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from repmedsam_ov.cli import main

from ..conftest import REPO, SHARED

EXAMPLES, EVAL = REPO / "examples" / "imgs", SHARED / "data" / "eval" / "imgs"


@pytest.fixture(scope="session")
def ray_control(tmp_path_factory):
    """One local Ray instance for the session; yields the kill-control file the workers' hook reads
    (tests/python/cluster_hooks.py), absent unless a test writes it."""
    ray = pytest.importorskip("ray")
    control = tmp_path_factory.mktemp("ray_control") / "kill.json"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False,
             logging_level=logging.ERROR, runtime_env={
                 "worker_process_setup_hook": "tests.python.cluster_hooks.install",
                 "env_vars": {"REPMEDSAM_TEST_KILL": str(control), "PYTHONPATH": str(REPO)}})
    yield control
    ray.shutdown()


@pytest.fixture(scope="module")
def toy_args(toy_model_dir):
    return ["-m", str(toy_model_dir), "--precision", "f32"]


def _write_inputs(folder: Path) -> Path:
    """The two examples, a NIfTI crop of the MR example and a PNG of the nuclei image with box files, and two
    bad inputs (a file that is not an npz, a NIfTI cut short)."""
    import SimpleITK as sitk

    folder.mkdir()
    for case in EXAMPLES.glob("*.npz"):
        shutil.copy(case, folder)
    with np.load(EXAMPLES / "3DBox_MR_sct_t1w-cord.npz") as case:
        volume = sitk.GetImageFromArray(case["imgs"][34:38].copy())
    volume.SetSpacing((0.5, 0.6, 2.0))
    sitk.WriteImage(volume, str(folder / "cord.nii.gz"))
    (folder / "cord.boxes.json").write_text(json.dumps([[13, 34, 0, 24, 40, 3]]))
    with np.load(EXAMPLES / "2DBox_Microscopy_StarDistDSB_img2d.npz") as case:
        cv2.imwrite(str(folder / "nuclei.png"), case["imgs"][:, :, 0])
        (folder / "nuclei.boxes.json").write_text(json.dumps(case["boxes"][:20].tolist()))
    (folder / "broken.npz").write_bytes(b"not a zip file")
    data = (folder / "cord.nii.gz").read_bytes()
    (folder / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    (folder / "cut.boxes.json").write_text(json.dumps([[13, 34, 0, 24, 40, 3]]))
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _report(err: str) -> list[str]:
    """The lines of a run's report that do not depend on timing: errors, the summary and failure lines."""
    return sorted(line for line in err.splitlines() if "error:" in line or "failed" in line)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, toy_args):
    """Plain `infer` over the mixed inputs: (inputs folder, its outputs by name, (exit code, stderr))."""
    folder = _write_inputs(tmp_path_factory.mktemp("cluster") / "in")
    out = folder.parent / "plain"
    result = _cli(["infer", str(folder), "-o", str(out), *toy_args])
    return folder, _files(out), result


def _cli(args: list[str]) -> tuple[int, str]:
    """main(args) with stderr captured: (exit code, stderr)."""
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()


def test_ray_outputs_and_report_equal_plain_infer(ray_control, plain_run, toy_args, tmp_path):
    folder, expected, (code, err) = plain_run
    assert code == 1 and "4 done, 0 skipped, 2 failed" in err
    out = tmp_path / "ray"
    ray_code, ray_err = _cli(["infer", str(folder), "-o", str(out), "--ray", "--actors", "2", "-t", "1", *toy_args])
    assert ray_code == code
    assert _files(out) == expected  # byte for byte: npz, NIfTI and PNG label maps
    assert _report(ray_err) == _report(err)  # the same error lines, summary and failure lines
    assert "Traceback" not in ray_err and "(raylet)" not in ray_err
    # a re-run resumes: everything done is skipped, the bad inputs fail again
    ray_code, ray_err = _cli(["infer", str(folder), "-o", str(out), "--ray", *toy_args])
    assert ray_code == 1 and "0 done, 4 skipped, 2 failed" in ray_err


def test_killed_actor_is_replaced_and_its_case_retried(ray_control, plain_run, toy_args, tmp_path):
    """One case takes its actor process down at its first attempt: it is retried on a new actor and written
    once. Another takes it down at every attempt: after 1 retry it is reported failed, and every other case is
    still written, with the same bytes as plain `infer`."""
    from repmedsam_ov.cluster import segment_files

    folder, expected, _ = plain_run
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("2DBox_Microscopy_StarDistDSB_img2d.npz", "nuclei.png", "nuclei.boxes.json", "cord.nii.gz",
                 "cord.boxes.json"):
        shutil.copy(folder / name, inputs)
    shutil.copy(folder / "2DBox_Microscopy_StarDistDSB_img2d.npz", inputs / "always.npz")
    kill_log = tmp_path / "kills.log"
    kill_log.write_text("")
    ray_control.write_text(json.dumps({"once": ["cord.nii.gz"], "always": ["always.npz"], "log": str(kill_log)}))
    try:
        out = tmp_path / "out"
        code, err = _cli(["infer", str(inputs), "-o", str(out), "--ray", "--actors", "2", "-t", "1", "--retries", "1",
                          *toy_args])
    finally:
        ray_control.unlink()
    assert code == 1
    assert "3 done, 0 skipped, 1 failed" in err
    failure = f"failed: {inputs / 'always.npz'}: the Ray actor segmenting it died 2 times (killed, out of memory"
    assert failure in err, err
    assert "Traceback" not in err
    events = [tuple(line.split()) for line in kill_log.read_text().splitlines() if not line.startswith("start")]
    assert sorted(events) == sorted([
        ("kill", "cord.nii.gz"), ("kill", "always.npz"), ("kill", "always.npz"),
        ("done", "cord.nii.gz"), ("done", "nuclei.png"), ("done", "2DBox_Microscopy_StarDistDSB_img2d.npz")])
    written = _files(out)  # no half-written or temporary files
    assert written == {name: expected[name] for name in
                       ("2DBox_Microscopy_StarDistDSB_img2d.npz", "nuclei.png", "cord.nii.gz")}
    # the API gives the same outcomes as data; a re-run skips what is done and retries the rest
    kill_log.write_text("")
    ray_control.write_text(json.dumps({"always": ["always.npz"], "log": str(kill_log)}))
    try:
        outcomes = segment_files([inputs], out, model=toy_args[1], precision="f32", threads=1, retries=0)
    finally:
        ray_control.unlink()
    by_name = {Path(o.path).name: o for o in outcomes}
    assert sorted((name, o.status) for name, o in by_name.items()) == [
        ("2DBox_Microscopy_StarDistDSB_img2d.npz", "skipped"), ("always.npz", "failed"), ("cord.nii.gz", "skipped"),
        ("nuclei.png", "skipped")]
    assert "died 1 time (killed" in by_name["always.npz"].message
    assert [line.split()[:2] for line in kill_log.read_text().splitlines()] == [["start", "always.npz"],
                                                                               ["kill", "always.npz"]]


def test_interrupted_run_resumes(ray_control, plain_run, toy_args, tmp_path):
    """The driver stopped after its first finished case (Ctrl-C): the same call again skips what was written
    and does the rest; in the end every case is written, with plain `infer`'s bytes."""
    from repmedsam_ov.cluster import segment_files

    folder, expected, _ = plain_run
    inputs = tmp_path / "in"
    inputs.mkdir()
    names = ["2DBox_Microscopy_StarDistDSB_img2d.npz", "3DBox_MR_sct_t1w-cord.npz", "nuclei.png", "cord.nii.gz"]
    for name in names + ["nuclei.boxes.json", "cord.boxes.json"]:
        shutil.copy(folder / name, inputs)
    out = tmp_path / "out"
    options = dict(model=toy_args[1], precision="f32", threads=1, actors=1)

    def stop(outcome):
        raise KeyboardInterrupt

    # each case at least 0.5 s (the workers' hook): the case in flight when the driver stops cannot also end in
    # the tenth of a second the driver takes to shut down (toy cases take 0.1 s, so it sometimes did)
    ray_control.write_text(json.dumps({"sleep": 0.5, "log": str(tmp_path / "hook.log")}))
    try:
        with pytest.raises(KeyboardInterrupt):
            segment_files([inputs], out, on_case=stop, **options)
    finally:
        ray_control.unlink()
    assert 1 <= len(_files(out)) < len(names)  # the case reported, perhaps the one then in flight
    statuses = [o.status for o in segment_files([inputs], out, **options)]
    assert len(statuses) == len(names) and set(statuses) == {"skipped", "done"}
    assert 1 <= statuses.count("skipped") <= 2, statuses
    assert _files(out) == {name: expected[name] for name in names}


def test_usage_errors(ray_control, tmp_path, capsys):
    case = str(EXAMPLES / "2DBox_Microscopy_StarDistDSB_img2d.npz")
    assert main(["infer", case, "-o", str(tmp_path), "--ray", "-j", "2"]) == 2
    assert "-j/--workers applies without --ray" in capsys.readouterr().err
    assert main(["infer", case, "-o", str(tmp_path), "--actors", "2"]) == 2
    assert "--actors applies to --ray runs only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["infer", case, "-o", str(tmp_path), "--ray", "--actors", "3,1"])
    assert "expected N or MIN,MAX with 1 <= MIN <= MAX, got '3,1'" in capsys.readouterr().err
    assert main(["infer", case, "-o", str(tmp_path), "--ray", "-m", str(tmp_path / "nomodel")]) == 1
    assert "nomodel" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.npz"))


def test_without_ray_the_cli_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [cluster] extra were not installed
    code = main(["infer", str(EXAMPLES), "-o", str(tmp_path / "out"), "--ray"])
    assert code == 2
    assert "--ray needs Ray, which is not installed (ray is missing): pip install 'repmedsam-ov[cluster]'" in (
        capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_plain_infer_never_imports_ray(toy_model_dir, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        import repmedsam_ov
        from repmedsam_ov.cli import main
        code = main(["infer", {str(EXAMPLES)!r}, "-o", {str(tmp_path / "out")!r}, "-m", {str(toy_model_dir)!r}, "-q"])
        print(json.dumps({{"code": code, "ray": sorted(m for m in sys.modules if m.split(".")[0] == "ray")}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"code": 0, "ray": []}, out.stderr


@pytest.mark.slow
def test_bundled_model_examples_and_eval_cases_equal_plain_infer(ray_control, tmp_path):
    """The issue's acceptance run, `infer examples/imgs -o out --ray` with the bundled model, plus three eval
    cases (2D and 3D): byte for byte the outputs of plain `infer`."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for case in [*EXAMPLES.glob("*.npz"), EVAL / "2DBox_Dermoscopy_PH2_IMD024.npz",
                 EVAL / "2DBox_XRay_JSRT_JPCLN035.npz", EVAL / "3DBox_CT_medsam2recist_000015_01_01_081-093.npz"]:
        shutil.copy(case, inputs)
    assert len(list(inputs.iterdir())) == 5
    assert main(["infer", str(inputs), "-o", str(tmp_path / "plain"), "-q"]) == 0
    assert main(["infer", str(inputs), "-o", str(tmp_path / "ray"), "--ray", "-q"]) == 0
    assert _files(tmp_path / "ray") == _files(tmp_path / "plain")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environ(process) -> dict:
    try:
        return process.environ()
    except Exception:  # gone, or another user's
        return {}


@pytest.mark.slow
def test_two_ray_nodes_on_loopback(toy_model_dir, plain_run, tmp_path):
    """A head node and a second node (`ray start`, 1 CPU each, on 127.0.0.1): two 1-thread actors need both
    nodes. The driver is a CLI process joining by the GCS address, then through Ray Client (ray://), then a Python
    driver that records which node ran each case; the nodes are stopped by their process ids."""
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    folder, expected, _ = plain_run
    ray_bin = Path(sys.executable).parent / "ray"
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must stay short
    port = _free_port()
    mark = "REPMEDSAM_TEST_RAY_NODES"  # every process of the two nodes inherits it: how they are found and stopped
    # the nodes and drivers share one token of their own (Ray's token authentication), not the user's ~/.ray one
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", mark: str(temp), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    try:
        client_port = _free_port()
        for node in (["--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir", str(temp),
                      "--ray-client-server-port", str(client_port)],
                     ["--address", f"127.0.0.1:{port}", "--dashboard-agent-listen-port", str(_free_port()),
                      "--resources", '{"second_node": 1}']):
            start = subprocess.run([ray_bin, "start", *node, *common], capture_output=True, text=True, env=env,
                                   timeout=120)
            assert start.returncode == 0, start.stdout + start.stderr
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{client_port}"):  # the GCS, then Ray Client
            out = tmp_path / address.replace("/", "_").replace(":", "_")
            run = subprocess.run([sys.executable, "-m", "repmedsam_ov", "infer", str(folder), "-o", str(out),
                                  "--ray", address, "--actors", "2", "-t", "1", "-m", str(toy_model_dir),
                                  "--precision", "f32"], capture_output=True, text=True, env=env, timeout=300)
            assert run.returncode == 1, run.stderr
            assert "4 done, 0 skipped, 2 failed" in run.stderr
            assert _files(out) == expected
        # the same through the API, with the test hook noting which node each case ran on (cases slowed to 1 s, so
        # that neither actor is done with them all before the other has started)
        log_file, control = tmp_path / "cases.log", tmp_path / "kill.json"
        log_file.write_text("")
        control.write_text(json.dumps({"sleep": 1, "log": str(log_file)}))
        script = textwrap.dedent(f"""
            import ray
            from repmedsam_ov.cluster import segment_files
            ray.init(address="127.0.0.1:{port}", runtime_env={{
                "worker_process_setup_hook": "tests.python.cluster_hooks.install",
                "env_vars": {{"REPMEDSAM_TEST_KILL": {str(control)!r}, "PYTHONPATH": {str(REPO)!r}}}}})
            outcomes = segment_files([{str(folder)!r}], {str(tmp_path / "api")!r}, model={str(toy_model_dir)!r},
                                     precision="f32", threads=1, actors=2)
            print(sorted(o.status for o in outcomes))
        """)
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
        assert run.stdout.split("\n")[-2] == str(["done"] * 4 + ["failed"] * 2), run.stderr
        assert _files(tmp_path / "api") == expected
        nodes = {line.split()[2] for line in log_file.read_text().splitlines() if line.startswith("start")}
        assert len(nodes) == 2, log_file.read_text()
    finally:
        mine = {p for p in psutil.process_iter() if p.pid != os.getpid() and _environ(p).get(mark) == str(temp)}
        for process in list(mine):  # Ray's agents rename themselves (setproctitle), their environment too
            with contextlib.suppress(psutil.Error):
                mine.update(process.children(recursive=True))
        for process in mine:
            process.terminate()
        gone, alive = psutil.wait_procs(mine, timeout=10)
        for process in alive:  # Ray's agents outlive their raylet's SIGTERM
            process.kill()
        shutil.rmtree(temp, ignore_errors=True)
