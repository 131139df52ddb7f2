"""`serve` through HTTP on a real server (uvicorn on loopback, httpx clients): masks equal `Segmenter`'s for the
same box, walks and saves equal `infer`'s output for the same box, the token, path escapes, bad requests as
JSON, and four clients at once. The golden model; no torch in this process."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from repmedsam_ov.cli import main

from .serve_helpers import TOKEN, live_server, write_cases

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, golden_segmenter):
    """(base URL, inputs folder, output folder, outside folder) of one server for the module's tests."""
    root = tmp_path_factory.mktemp("serve")
    inputs = write_cases(root / "in")
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.npz").write_bytes((inputs / "cord.npz").read_bytes())
    os.symlink(outside / "secret.npz", inputs / "link.npz")  # a symlink out of the served folder
    with live_server([inputs], root / "out", golden_segmenter(threads=2)) as url:
        yield url, inputs, root / "out", outside


@pytest.fixture()
def client(served):
    with httpx.Client(base_url=served[0], headers=AUTH, timeout=120) as c:
        yield c


def case_id(client, name: str) -> str:
    return next(c["id"] for c in client.get("/api/cases").json()["cases"] if c["name"] == name)


def raw(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    shape = tuple(int(v) for v in response.headers["X-Shape"].split(","))
    return np.frombuffer(response.content, np.dtype(response.headers["X-Dtype"]).newbyteorder("<")).reshape(shape)


def wait_job(client, job: dict) -> dict:
    for _ in range(1200):
        state = client.get(f"/api/jobs/{job['id']}").json()
        if state["state"] not in ("queued", "running"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish")


def infer_labels(tmp_path, name: str, files: dict, args=()) -> np.ndarray | bytes:
    """infer's output (bytes) for files {name: bytes or array dict} written to a fresh folder."""
    folder = tmp_path / f"infer_{name}"
    folder.mkdir()
    for file_name, content in files.items():
        if isinstance(content, dict):
            np.savez(folder / file_name, **content)
        else:
            (folder / file_name).write_bytes(content)
    out = tmp_path / f"out_{name.replace('.', '_')}"  # a folder: "x.nii.gz" would name the output file
    assert main(["infer", str(folder / name), "-o", str(out), *args, "-q"]) == 0
    return (out / name).read_bytes()


@pytest.fixture(scope="module")
def model_args(golden_model_dir):
    return ["-m", str(golden_model_dir), "--precision", "f32", "-t", "2"]


def test_token_is_required_and_compared(served):
    url = served[0]
    with httpx.Client(base_url=url) as anonymous:
        missing = anonymous.get("/api/cases")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert "needs its token" in missing.json()["error"]
        assert anonymous.get("/static/app.js").status_code == 401
        wrong = anonymous.get("/api/cases", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
        assert wrong.status_code == 403 and "wrong token" in wrong.json()["error"]
        assert anonymous.get("/api/cases", params={"token": "nope"}).status_code == 403
        page = anonymous.get("/", params={"token": TOKEN})
        assert page.status_code == 200 and f'content="{TOKEN}"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert anonymous.get("/static/app.js", params={"token": TOKEN}).status_code == 200


def test_a_box_gives_segmenters_mask_and_labels_follow_objects(client, golden_segmenter):
    cid = case_id(client, "nuclei.npz")
    opened = client.post(f"/api/cases/{cid}/open").json()
    assert opened["dims"] == 2 and opened["shape"] == [1, 512, 512] and opened["channels"] == 3
    with np.load(os.path.join(os.path.dirname(__file__), "../../examples/imgs/2DBox_Microscopy_StarDistDSB_img2d.npz")) as c:
        image, file_boxes = c["imgs"], c["boxes"]
    assert opened["file_boxes"] == file_boxes.tolist()
    np.testing.assert_array_equal(raw(client.get(f"/api/cases/{cid}/pixels/0")), image)
    seg = golden_segmenter(threads=2)
    boxes = [[100, 120, 190, 200], [150, 150, 260, 240]]
    replies = [client.post(f"/api/cases/{cid}/objects", json={"box": box}).json() for box in boxes]
    first, second = (r["object"] for r in replies)
    assert (first["box"], second["box"]) == (boxes[0], boxes[1]) and second["label"] == first["label"] + 1
    for obj, box in zip((first, second), boxes):
        expected = seg.segment_2d(image, np.array([box])) * obj["label"]
        np.testing.assert_array_equal(raw(client.get(f"/api/cases/{cid}/labels/0", params={"object": obj["id"]})),
                                      expected)
    expected = np.zeros(image.shape[:2], np.uint8)  # later objects over earlier ones, as infer paints boxes
    for obj, box in zip((first, second), boxes):
        expected[seg.segment_2d(image, np.array([box])) > 0] = obj["label"]
    np.testing.assert_array_equal(raw(client.get(f"/api/cases/{cid}/labels/0")), expected)
    # delete, undo, relabel, redraw
    state = client.delete(f"/api/cases/{cid}/objects/{first['id']}").json()
    assert [o["id"] for o in state["objects"]] == [second["id"]]
    state = client.post(f"/api/cases/{cid}/undo").json()
    assert [o["id"] for o in state["objects"]] == [first["id"], second["id"]]
    state = client.patch(f"/api/cases/{cid}/objects/{second['id']}", json={"label": 7}).json()
    assert [o["label"] for o in state["objects"]] == [first["label"], 7]
    redrawn = client.patch(f"/api/cases/{cid}/objects/{first['id']}", json={"box": [10, 10, 90, 80]}).json()
    np.testing.assert_array_equal(
        raw(client.get(f"/api/cases/{cid}/labels/0", params={"object": first["id"]})) > 0,
        seg.segment_2d(image, np.array([[10, 10, 90, 80]])) > 0)
    assert redrawn["object"]["box"] == [10, 10, 90, 80]


def test_walk_and_save_equal_infer_on_a_reoriented_nifti(client, served, tmp_path, model_args):
    _, inputs, out, _ = served
    cid = case_id(client, "cordx.nii.gz")
    opened = client.post(f"/api/cases/{cid}/open").json()
    assert opened["dims"] == 3 and opened["shape"] == [12, 76, 42]
    assert opened["file_boxes"] == [[13, 34, 3, 24, 40, 6]]  # the box file, moved to the model frame
    for obj in opened["objects"]:
        client.delete(f"/api/cases/{cid}/objects/{obj['id']}")
    obj = client.post(f"/api/cases/{cid}/objects", json={"box": [13, 34, 24, 40], "z": 5}).json()["object"]
    assert obj["box"] == [13, 34, 5, 24, 40, 5] and obj["slices"] == [5, 5]
    job = client.post(f"/api/cases/{cid}/objects/{obj['id']}/walk", json={"z_min": 3, "z_max": 6})
    assert job.status_code == 202
    state = wait_job(client, job.json())
    assert state["state"] == "done" and state["steps"] == state["total"] == 4
    saved = client.post(f"/api/cases/{cid}/save").json()["saved"]
    assert saved == str(out / "cordx.nii.gz")
    expected = infer_labels(tmp_path, "cordx.nii.gz", {n: (inputs / n).read_bytes()
                                                       for n in ("cordx.nii.gz", "cordx.boxes.json")}, model_args)
    assert (out / "cordx.nii.gz").read_bytes() == expected  # byte for byte: header, geometry, labels
    # loading the saved file gives the object back (one per label), with the same labels
    loaded = client.post(f"/api/cases/{cid}/load").json()["objects"]
    assert [(o["label"], o["box"], o["slices"]) for o in loaded] == [(1, None, [3, 6])]


def test_box_file_and_npz_save_equal_infer(client, served, tmp_path, model_args):
    _, inputs, out, _ = served
    for name, files in (("grey.png", ("grey.png", "grey.boxes.json")), ("cord.npz", ("cord.npz",))):
        cid = case_id(client, name)
        client.post(f"/api/cases/{cid}/open")
        state = wait_job(client, client.post(f"/api/cases/{cid}/file-boxes").json())
        assert state["state"] == "done", state
        client.post(f"/api/cases/{cid}/save").raise_for_status()
        expected = infer_labels(tmp_path, name, {n: (inputs / n).read_bytes() for n in files}, model_args)
        if name.endswith(".npz"):  # zip members carry a time stamp: compare the arrays
            import io
            with np.load(out / name) as ours, np.load(io.BytesIO(expected)) as theirs:
                assert ours["segs"].dtype == theirs["segs"].dtype
                np.testing.assert_array_equal(ours["segs"], theirs["segs"])
        else:
            assert (out / name).read_bytes() == expected


def test_paths_from_clients_never_escape(client, served):
    _, inputs, out, outside = served
    names = [c["name"] for c in client.get("/api/cases").json()["cases"]]
    assert "link.npz" not in names and sorted(names) == ["cord.npz", "cordx.nii.gz", "grey.png", "nuclei.npz"]
    for bad in ("../0", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "/etc/passwd", "link.npz", "99", "-1", "0x0"):
        reply = client.post(f"/api/cases/{bad}/open")
        assert reply.status_code == 404 and "error" in reply.json(), (bad, reply.text)
    # a symlink planted at a case's output file is never written through
    cid = case_id(client, "cord.npz")
    client.post(f"/api/cases/{cid}/open")
    client.post(f"/api/cases/{cid}/objects", json={"box": [13, 34, 24, 40], "z": 4}).raise_for_status()
    (out / "cord.npz").unlink(missing_ok=True)
    os.symlink(outside / "target.npz", out / "cord.npz")
    try:
        reply = client.post(f"/api/cases/{cid}/save")
        assert reply.status_code == 400 and "symlink" in reply.json()["error"]
        assert not (outside / "target.npz").exists()
    finally:
        (out / "cord.npz").unlink()


def test_bad_requests_are_json_errors(client):
    cid = case_id(client, "nuclei.npz")
    client.post(f"/api/cases/{cid}/open")
    cases = [
        (client.post(f"/api/cases/{cid}/objects", content=b"{not json"), 400, "not JSON"),
        (client.post(f"/api/cases/{cid}/objects", json={"box": [1, 2, 3]}), 400, "expected 4 numbers"),
        (client.post(f"/api/cases/{cid}/objects", json={"box": [1, 2, 900, 30]}), 400, "x outside the image"),
        (client.post(f"/api/cases/{cid}/objects", json={"box": [1, 2, 30, 30], "label": 70000}), 400, "label 70000"),
        (client.post(f"/api/cases/{cid}/objects", json={"box": [1, 2, 30, 30], "pad": "x" * 70000}), 413, "over"),
        (client.post(f"/api/cases/{cid}/objects", content=iter([b"{" + b" " * 40000] * 2)), 413, "over"),  # chunked
        (client.patch(f"/api/cases/{cid}/objects/999", json={"label": 3}), 404, "no object 999"),
        (client.post(f"/api/cases/{cid}/objects/abc/walk", json={}), 400, "expected a whole number"),
        (client.get(f"/api/cases/{cid}/pixels/5"), 404, "no slice 5"),
        (client.post(f"/api/cases/{cid}/window", json={"window": "lung"}), 400, "not a CT volume"),
        (client.get("/api/jobs/nope"), 404, "no job"),
        (client.get("/api/nothing"), 404, "no such page"),
        (client.put("/api/cases"), 405, "method not allowed"),
    ]
    for reply, status, text in cases:
        assert reply.status_code == status and text in reply.json()["error"], (status, reply.text)
        assert "Traceback" not in reply.text


def test_four_clients_at_once_get_their_own_masks(served, golden_segmenter):
    url = served[0]
    seg = golden_segmenter(threads=2)
    with np.load(os.path.join(os.path.dirname(__file__), "../../examples/imgs/2DBox_Microscopy_StarDistDSB_img2d.npz")) as c:
        image = c["imgs"]
    with np.load(served[1] / "cord.npz") as c:
        volume = c["imgs"]
    jobs = [("nuclei.npz", [20, 30, 120, 110], None), ("nuclei.npz", [300, 310, 400, 420], None),
            ("cord.npz", [13, 34, 24, 40], 3), ("cordx.nii.gz", [12, 30, 26, 44], 7)]
    results: list = [None] * 4
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        name, box, z = jobs[i]
        with httpx.Client(base_url=url, headers=AUTH, timeout=120) as c:
            cid = case_id(c, name)
            c.post(f"/api/cases/{cid}/open").raise_for_status()
            barrier.wait()
            obj = c.post(f"/api/cases/{cid}/objects", json={"box": box, "z": z}).json()["object"]
            results[i] = (obj, raw(c.get(f"/api/cases/{cid}/labels/{z or 0}", params={"object": obj["id"]})))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (name, box, z), (obj, mask) in zip(jobs, results):
        if z is None:
            expected = seg.segment_2d(image, np.array([box]))
        else:
            expected = seg.segment_3d(volume, np.array([[box[0], box[1], z, box[2], box[3], z]]))[z]
        np.testing.assert_array_equal(mask > 0, expected > 0, err_msg=name)
        assert mask.max() == obj["label"]


def test_ct_window_changes_the_model_pixels(tmp_path, golden_segmenter):
    import SimpleITK as sitk

    from repmedsam_ov.intensity import window_ct

    hu = (np.arange(4 * 32 * 32, dtype=np.int16).reshape(4, 32, 32) % 2000) - 1000
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(tmp_path / "ct.nii.gz"))
    with live_server([tmp_path / "ct.nii.gz"], tmp_path / "out", golden_segmenter(threads=2)) as url, \
            httpx.Client(base_url=url, headers=AUTH) as c:
        opened = c.post("/api/cases/0/open").json()
        assert opened["window"] == [400.0, 40.0] and "CT window 400,40 HU" in opened["note"]
        np.testing.assert_array_equal(raw(c.get("/api/cases/0/pixels/2")), window_ct(hu, 400, 40)[2])
        changed = c.post("/api/cases/0/window", json={"window": "1500,-600"}).json()
        assert changed["window"] == [1500.0, -600.0]
        np.testing.assert_array_equal(raw(c.get("/api/cases/0/pixels/2")), window_ct(hu, 1500, -600)[2])
        assert "window 'nope'" in c.post("/api/cases/0/window", json={"window": "nope"}).json()["error"]
