"""What a newcomer met first: output file modes, the CLI's wording of a missing model and of bad counts, `info`
on the default model and precision, OpenVINO's noise on a malformed IR, box sizes in the box file's order,
the README's Python example and the bench's version and commit. No torch in this process."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from repmedsam_ov import ModelError, Segmenter, _core  # noqa: E402
from repmedsam_ov import bundled  # noqa: E402
from repmedsam_ov.atomic import atomic_path  # noqa: E402
from repmedsam_ov.bench import checkout_commit  # noqa: E402
from repmedsam_ov.cli import main  # noqa: E402
from repmedsam_ov.io import save_segs  # noqa: E402
from repmedsam_ov.medical_io import read_volume, write_labels_2d, write_labels_3d  # noqa: E402
from repmedsam_ov.overlay import write_overlays  # noqa: E402

from ..conftest import REPO  # noqa: E402
from .conftest import TOY_INFO, build_toy_model  # noqa: E402


def tiny_case(folder, name="case.npz"):
    path = folder / name
    np.savez(path, imgs=np.full((40, 50, 3), 90, np.uint8), boxes=np.array([[4, 4, 30, 30]]))
    return path


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- 2: outputs get mode 0666 & ~umask, still atomically ---------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_every_output_writer_gives_the_usual_mode(umask, mask, tmp_path):
    umask(mask)
    source = tmp_path / "in.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16)), str(source))
    volume = read_volume(source)
    labels = np.zeros((3, 4, 5), np.uint8)
    out = tmp_path / "out"
    save_segs(out / "a.npz", labels)
    write_labels_2d(out / "b.png", labels[0])
    write_labels_3d(out / "c.nii.gz", labels, volume)  # header copied from the input
    write_labels_3d(out / "d.mha", labels, volume)     # written by SimpleITK
    write_overlays(out / "overlays", "e", np.zeros((20, 30, 3), np.uint8), np.ones((20, 30), np.uint8),
                   np.array([[2, 2, 10, 10]]))
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert [p.name for p in written] == ["a.npz", "b.png", "c.nii.gz", "d.mha", "e.png"]  # no temporary left
    assert {p.name: mode(p) for p in written} == {p.name: 0o666 & ~mask for p in written}


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "labels.nii.gz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


# ---- 3: the CLI names -m, `info` tells the default model and the precision `auto` picks -----------------------

@pytest.fixture
def no_bundled_model(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled, "MODELS", tmp_path / "no_bundle")


def test_a_missing_model_is_worded_for_the_cli_and_for_python(no_bundled_model, tmp_path, capsys):
    assert main(["infer", str(tiny_case(tmp_path)), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no bundled model is installed" in err and "pass -m MODEL_DIR" in err and "model=" not in err
    assert main(["bench", str(tiny_case(tmp_path)), "--engines", "ov-python"]) == 1
    assert "pass -m MODEL_DIR" in capsys.readouterr().err
    with pytest.raises(ModelError, match="pass model=MODEL_DIR"):
        Segmenter()
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    assert "default: bundled)" not in capsys.readouterr().out


def info(capsys, *args) -> dict:
    assert main(["info", *args]) == 0
    return capsys.readouterr().out


def test_info_without_a_bundled_model(no_bundled_model, capsys):
    facts = json.loads(info(capsys, "--json"))
    assert facts["model_bundled"] is False and facts["default_model_dir"] is None
    assert facts["auto_precision"] in ("bf16", "f32") and facts["auto_precision_reason"]
    text = info(capsys)
    assert "model_bundled: False" in text and "default_model_dir: none" in text and "-m MODEL_DIR" in text
    assert f"auto_precision: {facts['auto_precision']}\n" in text


def test_info_infer_and_segmenter_share_the_bundled_model(monkeypatch, toy_model_dir, tmp_path, capsys):
    (tmp_path / "models").mkdir()
    default = tmp_path / "models" / bundled.DEFAULT_MODEL
    default.symlink_to(toy_model_dir)
    monkeypatch.setattr(bundled, "MODELS", tmp_path / "models")
    facts = json.loads(info(capsys, "--json"))
    assert facts["model_bundled"] is True and facts["default_model_dir"] == str(default)
    segmenter = Segmenter()
    assert segmenter.model_dir == default and segmenter.precision == facts["auto_precision"]
    assert main(["infer", str(tiny_case(tmp_path)), "-o", str(tmp_path / "out"), "-q"]) == 0
    assert (tmp_path / "out" / "case.npz").is_file()
    text = info(capsys)
    for key, value in facts.items():
        assert key == "bundled_models" or f"{key}: {value}\n" in text
    assert f"bundled model {bundled.DEFAULT_MODEL} (default): " in text


@pytest.mark.parametrize("int8", [None, "true", "false"])
def test_auto_precision_reason_matches_the_runtime(int8, toy_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(toy_model_dir, folder)
    if int8 is not None:
        build_toy_model(tmp_path / "int8", TOY_INFO | {"int8": "true", "int8_accuracy_ok": int8})
        for ext in (".xml", ".bin"):
            shutil.copy(tmp_path / "int8" / f"encoder{ext}", folder / f"encoder_int8{ext}")
    precision, reason = _core.auto_precision(str(folder))
    assert Segmenter(folder, threads=1).precision == precision
    expected = {"bf16": "computes bf16 natively", None: "has no int8 encoder",
                "true": "int8 encoder passed its accuracy bound", "false": "int8 encoder failed its accuracy bound"}
    assert expected["bf16" if precision == "bf16" else int8] in reason


def test_auto_picks_bf16_exactly_where_the_kernel_reports_native_bf16_units():
    # the kernel's CPU flags are an independent reading of the cpuid bits the runtime checks; bf16 pays off only
    # on AMX or AVX512-BF16 units (elsewhere OpenVINO emulates it, ~5x slower than f32)
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this platform")
    import openvino as ov

    native = ("amx_bf16" in flags and "amx_tile" in flags) or ("avx512_bf16" in flags and "avx512f" in flags)
    openvino_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precision, reason = _core.auto_precision("")
    assert (precision == "bf16") == (native and openvino_bf16), reason


# ---- 4: counts are checked as usage errors, in the CLI's words ------------------------------------------------

@pytest.mark.parametrize("args,option,value", [
    (["infer", "c.npz", "-o", "o", "-t", "0"], "-t/--threads", "'0'"),
    (["infer", "c.npz", "-o", "o", "--threads", "-2"], "-t/--threads", "'-2'"),
    (["infer", "c.npz", "-o", "o", "-j", "0"], "-j/--workers", "'0'"),
    (["infer", "c.npz", "-o", "o", "-j", "two"], "-j/--workers", "'two'"),
    (["bench", "c.npz", "-t", "0"], "-t/--threads", "'0'"),
    (["bench", "c.npz", "--repeats", "0"], "--repeats", "'0'"),
])
def test_bad_counts_are_usage_errors(args, option, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: expected a whole number of at least 1, got {value}" in err
    assert "positive integer or None" not in err and "Traceback" not in err


# ---- 5: a malformed IR gives our one line only -------------------------------------------------------------

@pytest.mark.parametrize("junk", ["text", "truncated", "binary"])
def test_a_malformed_encoder_xml_prints_one_line(junk, toy_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(toy_model_dir, model)
    xml = (model / "encoder.xml").read_bytes()
    (model / "encoder.xml").write_bytes({"text": b"this is not xml\n", "truncated": xml[:len(xml) // 2],
                                         "binary": b"\x08\x01\x12\x00"}[junk])
    run = subprocess.run([sys.executable, "-m", "repmedsam_ov", "infer", str(tiny_case(tmp_path)), "-o",
                          str(tmp_path / "out"), "-m", str(model)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.startswith(f"repmedsam-ov: error: {model / 'encoder.xml'}: cannot be read as an OpenVINO IR (")
    assert run.stderr.count("\n") == 1, run.stderr
    for noise in ("absl", "GraphDef", "WARNING", "Available frontends"):
        assert noise not in run.stderr


# ---- 7: box errors give the size in the box file's (i, j, k) order --------------------------------------------

def test_volume_box_errors_give_the_size_in_box_order(toy_model_dir, tmp_path, capsys):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((7, 6, 4), np.uint8)), str(tmp_path / "v.nii.gz"))  # (i, j, k) = (4, 6, 7)
    (tmp_path / "v.boxes.json").write_text(json.dumps({"size": [4, 6, 7], "boxes": [[0, 0, 0, 3, 5, 7]]}))
    assert main(["infer", str(tmp_path / "v.nii.gz"), "-o", str(tmp_path / "out"), "-m", str(toy_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "z outside the image (expected 0 <= z <= 6; image size [4, 6, 7] as (x, y, z))" in err
    assert "(7, 6, 4)" not in err


# ---- 8: the README's Python example runs; its sections and the ignored export folder --------------------------

def test_readme_python_example_runs(toy_model_dir, tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", readme, re.M)
    assert sections.index("Prerequisites") == sections.index("Set-up") + 1
    assert sections.index("Python API") == sections.index("Command line") + 1
    api = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", api, re.S).group(1)
    (tmp_path / "model").symlink_to(toy_model_dir)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["labels"].shape == (512, 512) and scope["volume"].shape == (77, 76, 42)
    assert scope["labels"].max() > 0 and scope["volume"].max() == 1
    assert capsys.readouterr().out.strip()
    assert "/model/" in (REPO / ".gitignore").read_text().split()


# ---- 9: bench records the installed version, and the commit of a checkout only ---------------------------------

def test_bench_records_version_and_no_commit_outside_a_checkout(toy_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.jsonl"
    assert main(["bench", str(tiny_case(tmp_path)), "--engines", "runtime-f32", "-m", str(toy_model_dir),
                 "--json", str(out), "-q"]) == 0
    row = json.loads(out.read_text())
    assert row["version"] == version("repmedsam-ov") and row["commit"] is None
    assert f"repmedsam-ov {row['version']}, commit None" in capsys.readouterr().out


def git(folder, *args) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True).stdout.strip()


def test_checkout_commit_only_in_this_project(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    git(other, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x")
    assert checkout_commit(other) is None  # a repository, but not of this project
    assert checkout_commit(tmp_path) is None
    if not (REPO / ".git").exists():
        pytest.skip("the tests run from an export without .git")
    head = git(REPO, "rev-parse", "--short", "HEAD")
    assert checkout_commit(REPO) == head and checkout_commit(REPO / "python" / "repmedsam_ov") == head
