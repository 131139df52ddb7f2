"""The validation split of the training data (issue 28): which cases are held out, the folder they are written
to, that a run validating on it never trains on them, and sampling shares fixed per group (2D, CT, MR)."""

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from repmedsam_export.train import Trainer  # noqa: E402
from repmedsam_export.train.data import FolderSource, Item  # noqa: E402
from repmedsam_export.train.samples import BalancedOrder, item_group  # noqa: E402
from repmedsam_export.train.val_split import case_boxes, held_out_names, write_val_folder  # noqa: E402
from repmedsam_ov.errors import UsageError  # noqa: E402
from repmedsam_ov.io import load_case  # noqa: E402

from .test_train import TRAIN, cache, folder, tiny  # noqa: E402,F401

pytestmark = pytest.mark.skipif(not TRAIN.is_dir(), reason=f"{TRAIN}: training data not found")


def _patient(name: str) -> str:
    """BraTS (deepmedic) volumes of one patient differ only in the sequence after the last '-'."""
    return re.sub(r"-(Flair|T1c)$", "", name)


def test_split_covers_every_source_and_modality_and_keeps_patients_together(folder):
    held = held_out_names(folder.items)
    sources_2d = {it.source for it in folder.items if it.z < 0}
    held_items = [it for it in folder.items if it.name in held]
    assert {it.source for it in held_items if it.z < 0} == sources_2d
    assert {item_group(it) for it in held_items if it.z >= 0} == {"CT", "MR"}
    assert {it.source for it in held_items if it.z >= 0} >= {"totalseg", "la2018", "deepmedic"}
    trained_patients = {_patient(it.name) for it in folder.items if it.name not in held}
    assert not trained_patients & {_patient(n) for n in held}
    assert held_out_names(list(reversed(folder.items))) == held  # independent of order
    few = [it for it in folder.items if it.name in held or it.source == "kvasir"]
    assert held_out_names(few) == held  # and of the other cases


def test_val_folder_holds_the_cases_as_the_eval_set_does(folder, tmp_path):
    names = write_val_folder(folder, tmp_path)
    assert set(names) == held_out_names(folder.items)
    for name in names:
        case = load_case(tmp_path / "imgs" / f"{name}.npz")  # the eval loader's own checks
        with np.load(tmp_path / "gts" / f"{name}.npz", allow_pickle=False) as npz:
            gts = npz["gts"]
        row = folder.rows[name]
        if row["kind"] == "3d":
            with np.load(folder.root / row["image"], allow_pickle=False) as npz:
                np.testing.assert_array_equal(case.imgs, npz["imgs"])
                assert (gts > 0).sum() == (npz["gts"] > 0).sum()
        assert list(np.unique(gts[gts > 0])) == list(range(1, len(case.boxes) + 1))
        for label, box in enumerate(case.boxes, start=1):
            where = np.argwhere(gts == label)
            if gts.ndim == 2:
                assert list(box) == [where[:, 1].min(), where[:, 0].min(), where[:, 1].max(), where[:, 0].max()]
            else:
                assert (box[2], box[5]) == (where[:, 0].min(), where[:, 0].max())
                mid = gts[int((box[5] - box[2]) / 2 + box[2])] == label
                assert mid[box[1]: box[4] + 1, box[0]: box[3] + 1].sum() == mid.sum() > 0


def test_case_boxes_renumbered_and_gaps_refused():
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[0:3, 1:3, 2:5] = 1
    labels[2, 5, 6] = 2
    np.testing.assert_array_equal(case_boxes(labels), [[2, 1, 0, 4, 2, 2], [6, 5, 2, 6, 5, 2]])
    with pytest.raises(ValueError, match="label 2 of 1..3 is missing"):
        case_boxes(np.where(labels == 2, 3, labels))


def test_a_run_validating_on_training_cases_leaves_them_out(tmp_path, cache):  # noqa: F811
    from repmedsam_export.train.data import CacheSource

    items = CacheSource(cache).items
    val_name = next(it.name for it in items if it.z >= 0)
    (tmp_path / "val" / "imgs").mkdir(parents=True)
    (tmp_path / "val" / "imgs" / f"{val_name}.npz").touch()
    trainer = Trainer(tiny(tmp_path, cache, val=str(tmp_path / "val"), max_steps=1))
    assert all(it.name != val_name for it in trainer.items)
    assert len(trainer.items) == sum(it.name != val_name for it in items)
    assert trainer.cfg.held_out == [val_name]
    trainer.run()
    with pytest.raises(UsageError, match="held_out"):  # another split would not continue the same run
        Trainer(tiny(tmp_path, cache, max_steps=1))


def test_group_shares_fix_each_group_and_split_the_rest():
    items = ([Item(f"2DBox_US_a{i}", "busi") for i in range(90)] + [Item("2DBox_XRay_b", "jsrt")]
             + [Item("3DBox_CT_c", "ct1", z) for z in range(3)] + [Item("3DBox_MR_d", "mr1", z) for z in range(40)]
             + [Item("3DBox_PET_e", "pet", z) for z in range(5)])
    order = BalancedOrder(items, 0.5, group_shares={"2D": 0.5, "CT": 0.2, "US": 0.3})
    by_group: dict[str, float] = {}
    for it, p in zip(items, order.p):
        by_group[item_group(it)] = by_group.get(item_group(it), 0.0) + p
    assert by_group["2D"] == pytest.approx(0.5) and by_group["CT"] == pytest.approx(0.2)
    # "US" names no 3D group here: MR and PET share the remaining 0.3 by their balanced weights
    assert by_group["MR"] / by_group["PET"] == pytest.approx(40 ** 0.5 / 5 ** 0.5)
    assert by_group["MR"] + by_group["PET"] == pytest.approx(0.3)
    shares = order.shares(items)  # sources inside the 2D group keep the count ** balance rule
    assert shares["busi"] / shares["jsrt"] == pytest.approx(90 ** 0.5)
    with pytest.raises(UsageError, match="summing to at most 1"):
        tiny_cfg = dict(stage="pipeline", data="x", group_shares={"2D": 0.8, "CT": 0.3})
        from repmedsam_export.train import TrainConfig

        TrainConfig(**tiny_cfg)
