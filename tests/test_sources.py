"""The source registry (a new source is one registration), your own images in COCO format (mapping, masks, bad
entries in one line, training through the command line), and the size limit on images."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid_pose import data as D  # noqa: E402
from hybrid_pose.fixtures import write_fake_coco, write_fake_layout, _rle  # noqa: E402
from hybrid_pose.body import LSP_FLIP  # noqa: E402


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    d = tmp_path_factory.mktemp("coco")
    people = write_fake_coco(d / "mine", image_ids=(1, 2, 3, 4, 5, 6, 10), seed=1,
                             segmentation=("rle", "rle_string", "polygon", "rle", "rle", "rle", None))
    return d, people


def test_a_new_source_is_one_registration(tmp_path):
    "A folder in the LSP layout becomes a dataset by one `register_source`: readers, splits, views and errors follow."
    r = tmp_path / "data"
    write_fake_layout(r, lsp=(1, 2), lspet=(), synthetic=6, seed=2)
    shutil.copytree(r / "synthetic", r / "mine")
    src = D.register_source(D.Source("mine", "mine", D.partial(D.fixed_split, train=(1, 2, 3, 4), val=(5, 6)), "lsp",
                                     ("{folder}/masks",), 4, "python make_mine.py --root {root}", annotates_occluded=False))
    try:
        assert D.parse_dataset("lsp+MINE") == ["lsp", "mine"] and "mine" in D.SOURCES
        assert D.ANNOTATES_OCCLUDED["mine"] is False and D.GET_COMMANDS["mine"] == "python make_mine.py --root {root}"
        ds = D.PoseDataset(r, "lsp+mine", "train", augment=False)
        assert [(x.source, x.number) for x in ds.records] == [("lsp", 1), ("lsp", 2)] + [("mine", n) for n in (1, 2, 3, 4)]
        s = ds[3]
        assert s["meta"]["source"] == "mine" and s["meta"]["has_mask"] and s["joints3d"].isnan().all()
        assert s["meta"]["annotated"].tolist() == (ds.records[3].keypoints[:, 2] > 0).tolist()    # not annotates_occluded
        assert [x.number for x in D.PoseDataset(r, "mine", "val").records] == [5, 6]
        shutil.rmtree(r / "mine")
        with pytest.raises(D.DataError, match=r"the mine data of dataset 'lsp\+mine' is not there.*python make_mine.py --root"):
            D.PoseDataset(r, "lsp+mine", "train")
    finally:
        D.SOURCE_REGISTRY.pop(src.name)
    with pytest.raises(D.UsageError, match="unknown dataset 'mine' \\(unknown: mine\\)"):
        D.parse_dataset("mine")


def test_registry_views_are_live_and_cover_every_source():
    assert set(D.SOURCES) >= {"lsp", "lspet", "synthetic", "lsp_sample"}
    assert dict(D.ANNOTATES_OCCLUDED) == {n: s.annotates_occluded for n, s in D.SOURCE_REGISTRY.items()}
    assert D.ANNOTATES_OCCLUDED["coco:x/annotations.json"] is False                       # kinds answer too
    assert set(D.GET_COMMANDS) == set(D.SOURCES) | {"upi-s1h"}
    assert [n for n, s in D.SOURCES.items() if s.truth3d] == ["synthetic"]
    assert D.parse_dataset("coco:Some/Path/annotations.json+lsp") == ["coco:Some/Path/annotations.json", "lsp"]  # case kept
    with pytest.raises(D.UsageError, match="needs the annotation file"): D.parse_dataset("coco:")
    assert D.val_dataset("lsp+lspet") == "lsp" and D.val_dataset("coco:a.json+lsp_sample") == "coco:a.json+lsp_sample"


def test_coco_records_split_and_crops(coco):
    d, people = coco
    f = d / "mine/annotations.json"
    ds = D.PoseDataset(d, f"coco:{f}", "train", augment=True, seed=4)
    assert [r.number for r in ds.records] == [1, 2, 3, 4, 5, 6]                           # annotation positions
    assert ds.report.excluded == {"coco crowd annotation": 1, "coco person with fewer than 6 visible joints": 1}
    assert {r.image.name for r in ds.records} == {f"photo_{i}.jpg" for i in range(1, 7)}
    for i, iid in enumerate(range(1, 7)):
        rec = ds.records[i]
        np.testing.assert_allclose(rec.keypoints, people[iid].astype(np.float32), atol=.02)  # mapping 17 -> 14
        for e in range(4):
            s = ds[(i, e)]; m = s["meta"]
            back = D.crop_to_image(s["keypoints"], m["center"], m["box_size"], m["flipped"], lsp_joints=True)
            vis = (s["keypoints"][:, 2] > 0)[LSP_FLIP] if m["flipped"] else s["keypoints"][:, 2] > 0
            torch.testing.assert_close(back[vis, :2], torch.as_tensor(people[iid][vis.numpy(), :2]).float(), atol=.02, rtol=0)
            assert s["mask"].any() and bool(m["has_mask"])
    # the silhouette in the crop is the person's: RLE (list and string) equals the drawn silhouette, pixel for pixel
    val = D.PoseDataset(d, f"coco:{f}", "train", augment=False)
    for i in (0, 1):
        full = val.read(i)
        rle = json.loads(f.read_text())["annotations"][i]["segmentation"]
        assert full["mask"].shape == full["image"].shape[:2] and full["mask"].sum() > 500
        if isinstance(rle["counts"], list):
            assert int(full["mask"].sum()) == sum(rle["counts"][1::2])
    poly = val.read(2)["mask"]                                                              # the polygon: a filled box
    ys, xs = np.nonzero(poly)
    assert poly[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
    # the crop box follows the person's bbox, not a fixed 224 px
    a = json.loads(f.read_text())["annotations"][0]
    assert float(val[0]["meta"]["box_size"]) == pytest.approx(D.COCO_BOX_FACTOR * max(a["bbox"][2:]))
    # image 10 (a multiple of 10) validates; it has no outline, so it needs require_mask=False
    v = D.PoseDataset(d, f"coco:{f}", "val", require_mask=False)
    assert [r.number for r in v.records] == [7] and v.report.unmasked == {f"coco:{f}": 1}


def test_compressed_rle_round_trip():
    rng = np.random.default_rng(0)
    for shape in ((7, 5), (40, 31), (1, 1)):
        m = rng.random(shape) > .6
        m[0, 0] = True
        for compressed in (False, True):
            got = np.asarray(D.rasterize_segmentation(_rle(m, compressed), shape[::-1])) > 0
            np.testing.assert_array_equal(got, m)


@pytest.mark.parametrize("edit, needle", [
    (lambda a: a["annotations"][1].update(keypoints=[1.] * 48),
     "annotation 2 (image 2): keypoints must have 51 numbers; got 48"),
    (lambda a: a["annotations"][0].update(bbox=[1, 2, 0, 5]), "annotation 1 (image 1): bbox must be 4 numbers"),
    (lambda a: a["annotations"][0].update(segmentation=[[1, 2, 3]]), "annotation 1 (image 1): segmentation must be polygons"),
    (lambda a: a["annotations"][0].update(image_id=77), "annotation 1 (image 77): names an image id that `images` does not list"),
    (lambda a: a["images"][1].update(file_name="gone.jpg"), "gone.jpg: does not exist (nor in images/)"),
])
def test_bad_coco_entries_name_the_entry(coco, tmp_path, edit, needle):
    d, _ = coco
    dst = tmp_path / "c"; shutil.copytree(d / "mine", dst)
    a = json.loads((dst / "annotations.json").read_text()); edit(a)
    (dst / "annotations.json").write_text(json.dumps(a))
    with pytest.raises(D.DataError) as e:
        D.PoseDataset(tmp_path, "coco:c/annotations.json", "train", strict=True)                 # relative to data_root
    assert needle in str(e.value) and "\n" not in str(e.value) and "annotations.json" in str(e.value)
    ds = D.PoseDataset(tmp_path, "coco:c/annotations.json", "train")                            # default: skipped, counted
    assert len(ds) == 5 and len(ds.report.skipped) == 1 and needle in ds.report.skipped[0][2]


def test_bad_coco_files_stop(tmp_path):
    f = tmp_path / "a.json"
    for text, needle in (("{not json", "a.json: is not readable JSON"), ('{"images": []}', "has no `images` and `annotations`")):
        f.write_text(text)
        with pytest.raises(D.DataError, match=needle): D.PoseDataset(tmp_path, f"coco:{f}")
    with pytest.raises(D.DataError, match="b.json: does not exist.*check the path in dataset 'coco:"):
        D.PoseDataset(tmp_path, f"coco:{tmp_path / 'b.json'}")


def test_too_large_images_say_so(tmp_path, monkeypatch):
    r = tmp_path / "data"
    write_fake_layout(r, lsp=(1, 2), lspet=(), seed=0)
    monkeypatch.setattr(D, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(D.DataError) as e: D.PoseDataset(r, "lsp", "train", strict=True)
    msg = str(e.value)
    assert "im0001.jpg: is " in msg and "the image is too large" in msg and "re-download" not in msg and "\n" not in msg
    ds = D.PoseDataset(r, "lsp", "train", check_files=False, strict=True)                     # also when decoding
    with pytest.raises(D.DataError, match="the image is too large"): ds[0]


def test_training_on_coco_from_the_command_line(coco, tmp_path):
    "`hybrid-pose train --set dataset=coco:PATH/annotations.json` trains through the unchanged trainer."
    d, _ = coco
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "train", "--set", f"dataset=coco:{d}/mine/annotations.json",
                          f"data_root={tmp_path}", "body_model=open", "backbone=resnet18", "pretrained=no", "img_size=64",
                          "batch_size=2", "max_steps=2", "num_workers=0", "prior=none", "val_every=-1", "ckpt_every=0",
                          "progress=false", "tensorboard=false", f"out_dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "finished 2 steps" in res.stdout, res.stdout[-2000:]
    cfg = json.loads((tmp_path / "run/config.json").read_text())
    assert cfg["dataset"] == f"coco:{d}/mine/annotations.json"
    ev = subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "evaluate", str(tmp_path / "run"), "--split", "train",
                         "--workers", "0", "--no-progress", "--out", str(tmp_path / "eval.csv")],
                        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "| this run |" in ev.stdout and "oracle:" in ev.stdout and "no test-time truth" in ev.stdout, ev.stdout[-3000:]
    assert (tmp_path / "eval.csv").read_text().count("\n") >= 2                        # a header and a row per image
    bad = subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "train", "--set", f"dataset=coco:{tmp_path}/none.json",
                          "max_steps=1", "progress=false", f"out_dir={tmp_path / 'run2'}"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    err = [l for l in bad.stderr.splitlines() if "error:" in l]
    assert bad.returncode == 2 and len(err) == 1 and "none.json: does not exist" in err[0], bad.stderr


def test_coco_cache_gives_the_same_samples(coco, tmp_path):
    d, _ = coco
    f = d / "mine/annotations.json"
    plain = D.PoseDataset(d, f"coco:{f}", "train", seed=2)
    cached = D.PoseDataset(d, f"coco:{f}", "train", seed=2, cache_dir=tmp_path / "cache")
    for _ in range(2):                                                  # the second pass reads the cache
        for i in range(len(plain)):
            a, b = plain[(i, 1)], cached[(i, 1)]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    entries = list((tmp_path / "cache").rglob("*.npz"))
    assert len(entries) == len(plain) and all(e.parent.parent == tmp_path / "cache" for e in entries)   # one flat folder


def test_short_joints_file_gets_the_repair_that_exists(tmp_path):
    "A short joints.mat is told the command that rebuilds it: `synth --n 0` for synthetic people, `--force` for LSP."
    import scipy.io
    write_fake_layout(tmp_path, lsp=(1, 2, 3), lspet=(), synthetic=3)
    for src, needle in (("synthetic", f"hybrid-pose synth --n 0 --out {tmp_path}/synthetic"),
                        ("lsp", f"get_lsp.py --data-root {tmp_path} --force")):
        f = tmp_path / src / "joints.mat"
        j = scipy.io.loadmat(f)["joints"]
        short = j[:, :, :2] if j.shape[0] == 3 else j[:2]
        scipy.io.savemat(f, {"joints": short})
        with pytest.raises(D.DataError) as e:
            D.find_records(tmp_path, src, split="all")
        assert needle in str(e.value) and "synthetic --force" not in str(e.value), str(e.value)
