"""`Segmenter.session` (the interactive API under `serve`): the same labels as `segment_2d` / `segment_3d` for the
same boxes, each slice encoded once across calls, progress counted, cancellation from another thread, and
the embedding store bound to one image. The golden model (real encoder and decoder) on the example cases."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from repmedsam_ov import Cancelled, InputError, Progress

from ..conftest import REPO

EXAMPLES = REPO / "examples" / "imgs"


@pytest.fixture(scope="module")
def nuclei():
    with np.load(EXAMPLES / "2DBox_Microscopy_StarDistDSB_img2d.npz") as case:
        return case["imgs"], case["boxes"][:3]


@pytest.fixture(scope="module")
def cord():
    """12 slices of the spinal-cord MR example and its box, cut to those slices."""
    with np.load(EXAMPLES / "3DBox_MR_sct_t1w-cord.npz") as case:
        return case["imgs"][30:42].copy(), np.array([[13, 34, 3, 24, 40, 6]])


def test_2d_boxes_equal_segment_2d_and_encode_once(golden_segmenter, nuclei):
    seg = golden_segmenter(threads=2)
    image, boxes = nuclei
    session = seg.session(image=image)
    for i, box in enumerate(boxes):
        labels, trace = session.segment(box[None], return_trace=True)
        np.testing.assert_array_equal(labels, seg.segment_2d(image, box[None]))
        assert trace.encoder_runs == (1 if i == 0 else 0)  # later boxes only run the decoder
    np.testing.assert_array_equal(session.segment(boxes), seg.segment_2d(image, boxes))
    assert session.encoded == 1


def test_3d_walk_and_one_slice_equal_segment_3d(golden_segmenter, cord):
    seg = golden_segmenter(threads=2)
    volume, boxes = cord
    session = seg.session(volume=volume)
    progress = Progress()
    labels, trace = session.segment(boxes, progress=progress, return_trace=True)
    np.testing.assert_array_equal(labels, seg.segment_3d(volume, boxes))
    assert trace.encoder_runs == 4 and progress.steps == 4  # slices 3..6
    one_slice = np.array([[13, 34, 5, 24, 40, 5]])
    labels, trace = session.segment(one_slice, return_trace=True)
    np.testing.assert_array_equal(labels, seg.segment_3d(volume, one_slice))
    assert trace.encoder_runs == 0 and labels[5].any() and not np.delete(labels, 5, axis=0).any()
    labels, trace = session.segment(boxes, return_trace=True)  # the walk again: decoder only
    assert trace.encoder_runs == 0 and session.encoded == 4


def test_cancel_before_and_during_a_walk(golden_segmenter, cord):
    seg = golden_segmenter(threads=2)
    volume, _ = cord
    session = seg.session(volume=volume)
    early = Progress()
    early.cancel()
    with pytest.raises(Cancelled):
        session.segment(np.array([[13, 34, 0, 24, 40, 11]]), progress=early)
    assert early.steps == 0 and session.encoded == 0
    progress = Progress()
    started = threading.Event()

    def cancel_after_first_step():
        while progress.steps == 0:
            started.wait(0.01)
        progress.cancel()

    canceller = threading.Thread(target=cancel_after_first_step)
    canceller.start()
    with pytest.raises(Cancelled):
        session.segment(np.array([[13, 34, 0, 24, 40, 11]]), progress=progress)
    canceller.join()
    assert 1 <= progress.steps < 12


def test_bad_input_and_the_store_bound_to_one_image(golden_segmenter, nuclei, cord):
    from repmedsam_ov import _core

    seg = golden_segmenter(threads=2)
    image, _ = nuclei
    with pytest.raises(InputError, match="either image=... .2D. or volume=... .3D."):
        seg.session()
    session = seg.session(image=image)
    with pytest.raises(InputError, match=r"segment_2d takes boxes \(N, 4\)"):
        session.segment(np.array([[1, 2, 0, 5, 6, 0]]))
    with pytest.raises(InputError, match="x outside the image"):
        session.segment(np.array([[1, 2, 600, 6]]))
    assert not session.pixels.flags.writeable
    store = _core.EmbeddingStore(4)
    seg._core.segment_2d(np.ascontiguousarray(image), np.array([[10.0, 10, 40, 40]]), store=store)
    with pytest.raises(InputError, match="this embedding store holds slices of a 512x512 image with 3 channels, not "
                                         "of a 12x76x42 volume; use one store per image"):
        seg._core.segment_3d(cord[0], np.array([[1.0, 1, 0, 5, 5, 0]]), store=store)
