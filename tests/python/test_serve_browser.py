"""`serve` in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, driven by Selenium)
loads the page, draws boxes with mouse events, waits for the masks, propagates a 3D box, saves — and the saved
label maps equal `infer`'s for the same boxes. It also takes the README's screenshots (docs/serve-2d.png,
docs/serve-3d.png). The bundled model, so the masks in the pictures are real. Skipped, saying why, where no
Chromium is installed (.ci/run installs it)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from repmedsam_ov.cli import main

from ..conftest import REPO
from .serve_helpers import EXAMPLES, TOKEN, live_server

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the [test] extra) is not installed")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no Chromium and chromedriver on this machine "
                                "(Debian: apt-get install chromium chromium-driver; .ci/run installs them)")
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def bundled_segmenter():
    from repmedsam_ov import Segmenter

    return Segmenter(precision="f32", threads=2)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,860", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 300):
    """Poll a JS expression until it is truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script};")
        if value:
            return value
        time.sleep(0.1)
    status = driver.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {script}; the page says: {status}")


def drag_box(driver, box):
    """Drag the mouse over image pixels box = [x0, y0, x1, y1] (W3C pointer actions: real mouse events)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    (ax, ay), (bx, by) = (driver.execute_script("return window.repmedsam.imageToClient(arguments[0], arguments[1]);",
                                                x, y) for x, y in ((box[0], box[1]), (box[2], box[3])))
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(int(round(ax)), int(round(ay))).pointer_down()
    actions.pointer_action.move_to_location(int(round((ax + bx) / 2)), int(round((ay + by) / 2)))
    actions.pointer_action.move_to_location(int(round(bx)), int(round(by))).pointer_up()
    actions.perform()


def open_case(driver, name: str):
    driver.find_element("xpath", f"//ul[@id='cases']/li[text()='{name}']").click()
    wait_for(driver, f"window.repmedsam.state.meta && window.repmedsam.state.meta.name === '{name}' && "
                     "window.repmedsam.state.pixels && document.body.dataset.busy === '0'")


def settled(driver, n_objects: int):
    """Wait until n objects have masks and no request is in flight; returns their boxes."""
    wait_for(driver, f"window.repmedsam.state.objects.length === {n_objects} && "
                     "window.repmedsam.state.objects.every((o) => o.voxels > 0) && !window.repmedsam.state.job && "
                     "document.body.dataset.busy === '0'")
    return driver.execute_script("return window.repmedsam.state.objects.map((o) => o.box);")


def save(driver, expected: Path) -> None:
    driver.execute_script("delete document.body.dataset.saved;")
    driver.find_element("id", "save").click()
    wait_for(driver, f"document.body.dataset.saved === {str(expected)!r}")


def infer_segs(tmp_path: Path, name: str, imgs: np.ndarray, boxes) -> np.ndarray:
    folder = tmp_path / f"infer_{name}"
    folder.mkdir()
    np.savez(folder / f"{name}.npz", imgs=imgs, boxes=np.array(boxes))
    assert main(["infer", str(folder / f"{name}.npz"), "-o", str(folder / "out"), "--precision", "f32", "-t", "2",
                 "-q"]) == 0
    with np.load(folder / "out" / f"{name}.npz") as out:
        return out["segs"]


def test_draw_propagate_save_in_chromium(browser, bundled_segmenter, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(EXAMPLES / "2DBox_Microscopy_StarDistDSB_img2d.npz", inputs / "nuclei.npz")
    shutil.copy(EXAMPLES / "3DBox_MR_sct_t1w-cord.npz", inputs / "cord.npz")
    with live_server([inputs], out, bundled_segmenter) as url:
        browser.get(f"{url}/?token={TOKEN}")
        wait_for(browser, "document.querySelectorAll('#cases li').length === 2")

        # 2D: three nuclei boxed with the mouse, saved; infer with the same boxes writes the same labels
        open_case(browser, "nuclei.npz")
        with np.load(inputs / "nuclei.npz") as case:
            imgs, file_boxes = case["imgs"], case["boxes"]
        for box in file_boxes[[3, 10, 25]]:
            drag_box(browser, box.tolist())
            browser.find_element("id", "new").click()
        boxes = settled(browser, 3)
        assert np.abs(np.array(boxes) - file_boxes[[3, 10, 25]]).max() <= 1  # mouse to pixels: whole pixels
        save(browser, out / "nuclei.npz")
        DOCS.mkdir(exist_ok=True)
        browser.save_screenshot(str(DOCS / "serve-2d.png"))
        with np.load(out / "nuclei.npz") as saved:
            np.testing.assert_array_equal(saved["segs"], infer_segs(tmp_path, "nuclei", imgs, boxes))

        # 3D: a box on the middle slice of the cord, propagated over slices 34..42, saved; as infer's walk
        open_case(browser, "cord.npz")
        browser.execute_script("document.getElementById('slice').value = 38;"
                               "document.getElementById('slice').dispatchEvent(new Event('input'));")
        wait_for(browser, "window.repmedsam.state.z === 38 && document.body.dataset.busy === '0'")
        drag_box(browser, [13, 34, 24, 40])
        settled(browser, 1)
        for field, value in (("z-min", 34), ("z-max", 42)):
            element = browser.find_element("id", field)
            element.clear()
            element.send_keys(str(value))
        browser.find_element("tag name", "body").send_keys("p")  # the shortcut for Propagate
        wait_for(browser, "window.repmedsam.state.objects[0].slices && "
                          "window.repmedsam.state.objects[0].slices[1] - window.repmedsam.state.objects[0].slices[0] > 2")
        (box,) = settled(browser, 1)
        assert box[2:3] + box[5:6] == [34, 42]
        save(browser, out / "cord.npz")
        browser.save_screenshot(str(DOCS / "serve-3d.png"))
        with np.load(inputs / "cord.npz") as case:
            volume = case["imgs"]
        with np.load(out / "cord.npz") as saved:
            np.testing.assert_array_equal(saved["segs"], infer_segs(tmp_path, "cord", volume, [box]))
        assert browser.execute_script("return document.getElementById('status').classList.contains('error');") is False
