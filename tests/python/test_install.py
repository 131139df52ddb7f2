"""The installed extension: imports with no environment set, and reports the OpenVINO it was built against."""

import subprocess
import sys

import openvino

from repmedsam_ov import _core


def test_core_imports_with_an_empty_environment():
    code = "from repmedsam_ov import _core; print(_core.openvino_version(), _core.available_devices())"
    out = subprocess.run([sys.executable, "-c", code], env={}, capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "CPU" in out.stdout


def test_core_was_built_against_the_installed_openvino():
    assert _core.openvino_version().split("-")[0] == openvino.get_version().split("-")[0]
    assert "CPU" in _core.available_devices()
