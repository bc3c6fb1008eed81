"""hybrid_pose.data beyond the notebook's checks: the sample contract, reproducibility across worker counts and
epochs, pairing by number, bad data with workers, the synthetic split, and mapping predictions back."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid_pose import data as D  # noqa: E402
from hybrid_pose.fixtures import write_fake_layout  # noqa: E402
from hybrid_pose.body import LSP_FLIP  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("data") / "data"
    truth = write_fake_layout(r, lsp=(1, 2, 3, 4, 1001, 1002), lspet=(1, 2, 3, 4, 5), lspet_masks=(1, 3, 5),
                              synthetic=10, seed=3)
    return r, truth


def _copy(root, tmp_path):
    dst = tmp_path / "data"; shutil.copytree(root, dst)
    return dst


def test_sample_contract(root):
    r, truth = root
    ds = D.PoseDataset(r, "lsp+lspet", "train")
    assert len(ds) == 4 + 3 and ds.report.excluded == {"lspet image without a UPi-S1h silhouette": 2}
    assert [(x.source, x.number) for x in ds.records][4:] == [("lspet", 1), ("lspet", 3), ("lspet", 5)]
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {"image", "keypoints", "mask", "parts", "joints3d", "meta"}
        assert s["joints3d"].shape == (14, 3) and s["joints3d"].isnan().all()            # LSP and LSPe have no 3D truth
        assert s["image"].shape == (3, 224, 224) and s["image"].dtype == torch.float32
        assert -2.2 < s["image"].min() and s["image"].max() < 2.7                       # ImageNet-normalised
        assert s["keypoints"].shape == (14, 3) and set(s["keypoints"][:, 2].tolist()) <= {0., 1.}
        vis = s["keypoints"][:, 2] > 0
        assert (s["keypoints"][vis, :2].abs() <= 1).all()
        assert s["mask"].dtype == torch.bool and s["mask"].shape == (224, 224) and s["mask"].any()
        assert s["parts"].dtype == torch.uint8 and set(s["parts"].unique().tolist()) <= set(range(7)) | {255}
        m = s["meta"]
        assert m["source"] == ds.records[i].source and int(m["number"]) == ds.records[i].number and int(m["index"]) == i
        assert m["center"].shape == (2,) and 224 / 1.23 - 1e-3 <= float(m["box_size"]) <= 224 / 0.8 + 1e-3
        H, W = np.asarray(Image.open(ds.records[i].image)).shape[:2]
        assert m["image_size"].tolist() == [H, W] and bool(m["has_mask"])
    # silhouette and parts agree (both from the same drawing), and flips swap the arm labels with the pixels
    s = ds[(0, 0)]
    assert torch.equal(s["mask"], (s["parts"] > 0) & (s["parts"] != 255))


def test_flip_swaps_part_sides_and_joints(root):
    r, _ = root
    ds = D.PoseDataset(r, "lsp", "train", jitter=0, scale=(1, 1), flip=1.0)     # always flipped, else deterministic
    det = D.PoseDataset(r, "lsp", "train", augment=False)
    a, b = ds[0], det[0]
    assert bool(a["meta"]["flipped"]) and torch.equal(a["meta"]["center"], b["meta"]["center"])
    assert torch.equal(a["mask"], b["mask"].flip(-1))
    swapped = torch.from_numpy(D.part_labels(b["parts"].flip(-1).numpy(), flip=True))     # right arm 3 <-> left arm 4, ...
    assert torch.equal(a["parts"], swapped) and not torch.equal(a["parts"], b["parts"].flip(-1))
    assert torch.allclose(a["image"], b["image"].flip(-1), atol=1e-4)
    kb = b["keypoints"][LSP_FLIP]
    assert torch.allclose(a["keypoints"][:, 0], -kb[:, 0], atol=1e-5) and torch.allclose(a["keypoints"][:, 1], kb[:, 1])


@pytest.mark.parametrize("workers", [1, 2])
def test_same_batches_for_any_worker_count(root, workers):
    "Two epochs with persistent workers equal two epochs in the main process: the epoch reaches the workers."
    r, _ = root
    ds = D.PoseDataset(r, "lsp+lspet", "train", seed=7)
    def run(n):
        dl = D.make_loader(ds, batch_size=3, num_workers=n)
        return [(b["meta"]["index"].tolist(), b["meta"]["epoch"].tolist(), b["image"], b["keypoints"], b["mask"])
                for _ in range(2) for b in dl]
    ref, got = run(0), run(workers)
    assert len(ref) == len(got) == 4                                                 # 7 samples, batch 3, drop_last
    assert ref[0][1] == [0, 0, 0] and ref[2][1] == [1, 1, 1]
    for x, y in zip(ref, got):
        assert x[0] == y[0] and x[1] == y[1] and all(torch.equal(u, v) for u, v in zip(x[2:], y[2:]))
    dl = D.make_loader(ds, batch_size=3, num_workers=0); dl.sampler.set_epoch(1)    # resuming at epoch 1
    b = next(iter(dl))
    assert b["meta"]["index"].tolist() == ref[2][0] and torch.equal(b["image"], ref[2][2])


def test_seed_changes_crops_validation_does_not(root):
    r, _ = root
    a, b = D.PoseDataset(r, "lsp", "train", seed=0), D.PoseDataset(r, "lsp", "train", seed=1)
    assert not torch.equal(a[0]["meta"]["center"], b[0]["meta"]["center"])
    v = D.PoseDataset(r, "lsp", "val")
    assert not v.augment and [x.number for x in v.records] == [1001, 1002]
    batches = list(D.make_loader(v, batch_size=2, num_workers=0))
    assert len(batches) == 1 and batches[0]["meta"]["number"].tolist() == [1001, 1002]       # no shuffle, no drop


def test_pairing_by_number_not_position(root, tmp_path):
    "With a silhouette missing in the middle, every later image still gets its own mask (sizes would differ)."
    r = _copy(root[0], tmp_path)
    (r / "upi-s1h/data/lsp/im0002_segmentation.png").unlink()
    ds = D.PoseDataset(r, "lsp", "train", require_mask=False)
    assert [x.number for x in ds.records] == [1, 2, 3, 4]
    for x in ds.records:
        if x.mask is not None: assert x.mask.name.startswith(f"im{x.number:04d}_")
    assert not bool(ds[1]["meta"]["has_mask"]) and not ds[1]["mask"].any()
    for i in (0, 2, 3):
        full = ds.read(i)
        assert full["mask"].shape == full["image"].shape[:2]
    strict = pytest.raises(D.DataError, match=r"im0002\.jpg: has no silhouette; expected .*im0002_segmentation\.png")
    with strict: D.PoseDataset(r, "lsp", "train", strict=True)


@pytest.mark.parametrize("breakage, kind, needle", [
    ("missing_image", "missing image", "im0003_segmentation.png: has no image"),
    ("size", "size mismatch", "im0003_segmentation.png: is 7×9 pixels"),
    ("corrupt_mask", "corrupt mask", "im0003_segmentation.png: is not a readable mask"),
])
def test_bad_data_strict_and_default(root, tmp_path, breakage, kind, needle):
    r = _copy(root[0], tmp_path)
    lsp, up = r / "lsp", r / "upi-s1h/data/lsp"
    if breakage == "missing_image": (lsp / "images/im0003.jpg").unlink()
    if breakage == "size": Image.new("L", (7, 9)).save(up / "im0003_segmentation.png")
    if breakage == "corrupt_mask": (up / "im0003_segmentation.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(D.DataError) as e:
        D.PoseDataset(r, "lsp+lspet", "train", strict=True)
    msg = str(e.value)
    assert needle in msg and "expected" in msg and "Fix:" in msg, msg
    ds = D.PoseDataset(r, "lsp+lspet", "train")
    assert ds.counts[kind] >= 1 and any(kind == k for _, k, _ in ds.skipped)
    assert ds.report.found["lspet"] == 3


@pytest.mark.parametrize("breakage, needle", [
    ("joints_shape", "joints.mat: `joints` has shape (3, 14)"),
    ("joints_short", "joints.mat: holds joints for 2 images, but"),
    ("joints_nan", "joints.mat: has non-finite (NaN or infinite) coordinates in 1 of 2000 images (im 3)"),
    ("source_missing", "the lspet data of dataset 'lsp+lspet' is not there"),
])
def test_whole_source_problems_stop_in_either_mode(root, tmp_path, breakage, needle):
    "A broken joints.mat or a named source that is absent stops (one line), instead of a partial or NaN dataset."
    r = _copy(root[0], tmp_path)
    lsp = r / "lsp"
    j = scipy.io.loadmat(lsp / "joints.mat")["joints"]
    if breakage == "joints_shape": scipy.io.savemat(lsp / "joints.mat", {"joints": np.zeros((3, 14))})
    if breakage == "joints_short": scipy.io.savemat(lsp / "joints.mat", {"joints": j[:, :, :2]})
    if breakage == "joints_nan":
        j[1, 4, 2] = np.nan; scipy.io.savemat(lsp / "joints.mat", {"joints": j})
    if breakage == "source_missing": shutil.rmtree(r / "lspet")
    for strict in (True, False):
        with pytest.raises(D.DataError) as e:
            D.PoseDataset(r, "lsp+lspet", "train", strict=strict)
        msg = str(e.value)
        assert needle in msg and "expected" in msg and "Fix:" in msg and "\n" not in msg, msg


def test_decode_errors_never_crash_an_epoch(root, tmp_path):
    "A truncated JPEG and an empty silhouette are found only when decoded: dropped from the batch, in workers too."
    r = _copy(root[0], tmp_path)
    jpg = r / "lsp/images/im0002.jpg"; jpg.write_bytes(jpg.read_bytes()[:len(jpg.read_bytes()) // 2])
    Image.new("L", Image.open(r / "lsp/images/im0004.jpg").size).save(r / "upi-s1h/data/lsp/im0004_segmentation.png")
    ds = D.PoseDataset(r, "lsp", "train")
    assert len(ds) == 4 and ds.skipped == []                                # headers are fine
    for workers in (0, 2):
        numbers = sorted(n for b in D.make_loader(ds, batch_size=2, num_workers=workers, shuffle=False, persistent_workers=False)
                         for n in b["meta"]["number"].tolist())
        assert numbers == [1, 3]
    assert ds.counts == {"corrupt image": 1, "empty mask": 1}               # counted in the main process (0 workers)
    with pytest.raises(D.DataError, match="im0004_segmentation.png: is empty"):
        D.PoseDataset(r, "lsp", "train", strict=True)[3]
    assert D.collate_skip_none([None]) is None


def test_synthetic_split_and_layout(root, tmp_path):
    r, truth = root
    tr, va = D.PoseDataset(r, "synthetic", "train"), D.PoseDataset(r, "synthetic", "val")
    assert [x.number for x in tr.records] == list(range(1, 10)) and [x.number for x in va.records] == [10]
    assert tr.records[0].mask.parent.name == "masks" and tr.records[0].image.suffix == ".png"
    np.testing.assert_allclose(tr.records[2].keypoints, truth["synthetic"][3], atol=1e-4)
    r2 = _copy(r, tmp_path)
    (r2 / "synthetic/split.json").write_text(json.dumps({"train": [1, 2], "val": [3, 4, 5]}))
    assert [x.number for x in D.PoseDataset(r2, "synthetic", "val").records] == [3, 4, 5]
    assert len(D.PoseDataset(r, "lsp+synthetic", "train")) == 4 + 9


def test_predictions_map_back_to_the_image(root):
    "crop_to_image(meta) on a collated batch returns the annotations (visible joints) in original pixels."
    r, _ = root
    ds = D.PoseDataset(r, "lsp+lspet", "train", seed=2)
    b = next(iter(D.make_loader(ds, batch_size=7, num_workers=0, drop_last=False)))
    m = b["meta"]
    back = D.crop_to_image(b["keypoints"], m["center"], m["box_size"], m["flipped"], lsp_joints=True)
    for k in range(7):
        kp = torch.from_numpy(ds.records[int(m["index"][k])].keypoints)
        vis = back[k, :, 2] > 0
        assert vis.sum() >= 8 and torch.allclose(back[k, vis, :2], kp[vis, :2], atol=1e-3)


def test_cache_rebuilds_for_a_wider_augmentation(root, tmp_path):
    "A larger augmentation than the cached region: the entry is rebuilt, results stay identical."
    r, _ = root
    D.PoseDataset(r, "lsp", "train", cache_dir=tmp_path / "cache")[(0, 3)]
    wide = D.PoseDataset(r, "lsp", "train", scale=(0.5, 0.6), cache_dir=tmp_path / "cache")
    wide_plain = D.PoseDataset(r, "lsp", "train", scale=(0.5, 0.6))
    assert torch.equal(wide[(0, 3)]["image"], wide_plain[(0, 3)]["image"])


def test_cli_stops_on_a_missing_named_source(tmp_path):
    "`--dataset synthetic+lsp` without LSP on disk: exit 2 with one line naming lsp, not a run on synthetic people only."
    import subprocess
    write_fake_layout(tmp_path / "data", lsp=(), lspet=(), synthetic=4)
    r = subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "train", "--profile", "quick", "--set",
                        "dataset=synthetic+lsp", "data_root=data", "max_steps=1", "out_dir=runs/x", "pretrained=no"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stdout + r.stderr
    err = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "the lsp data of dataset 'synthetic+lsp' is not there" in err[0], r.stderr
    assert not (tmp_path / "runs/x/checkpoint.pt").exists()


def test_batches_carry_the_3d_truth_of_evaluate(tmp_path):
    "joints3d in a batch is what evaluate.batch_joints3d looks up from truth.npz, mirrored for flipped crops; NaN without truth."
    from hybrid_pose.evaluate import batch_joints3d, load_truth, truth_file
    r = tmp_path / "data"
    write_fake_layout(r, lsp=(1, 2, 1001), lspet=(), synthetic=8, truth3d=True, seed=5)
    truth = {"synthetic": load_truth(truth_file(r))}
    for augment, flip in ((False, 0.), (True, .5), (True, 1.)):
        ds = D.PoseDataset(r, "synthetic", "all", augment=augment, flip=flip, seed=1)
        b = next(iter(D.make_loader(ds, batch_size=8, num_workers=0, shuffle=False, drop_last=False)))
        assert b["joints3d"].shape == (8, 14, 3) and b["joints3d"].dtype == torch.float32
        ref = batch_joints3d(truth, b["meta"]).float()
        assert torch.isfinite(ref).all()
        torch.testing.assert_close(b["joints3d"], ref, rtol=0, atol=0)
        n_flip = int(b["meta"]["flipped"].sum())
        assert n_flip == {0.: 0, 1.: 8}.get(flip, n_flip) and (flip != .5 or 0 < n_flip < 8)
    mixed = D.PoseDataset(r, "lsp+synthetic", "all", augment=False)
    b = next(iter(D.make_loader(mixed, batch_size=11, num_workers=0, shuffle=False, drop_last=False)))
    lsp = torch.tensor([s == "lsp" for s in b["meta"]["source"]])
    assert lsp.sum() == 3 and b["joints3d"][lsp].isnan().all() and torch.isfinite(b["joints3d"][~lsp]).all()
    torch.testing.assert_close(b["joints3d"], batch_joints3d(truth, b["meta"]).float(), rtol=0, atol=0, equal_nan=True)
