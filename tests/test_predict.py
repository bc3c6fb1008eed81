"""hybrid_pose.predict beyond the notebook's checks: the `hybrid-pose` command as a subprocess (the installed script and
`python -m`), the files `predict` writes (read back by our reader and, where installed, by trimesh), a checkpoint made
here that must change the result the way its Θ₀ says, clean one-line errors with exit status 2, and `synth`."""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid_pose import predict as P  # noqa: E402
from hybrid_pose import cli  # noqa: E402
from hybrid_pose.checkpoint import save_network  # noqa: E402
from hybrid_pose.data import crop_image, normalize_image  # noqa: E402
from hybrid_pose.model import HybridPoseNet, mean_theta  # noqa: E402
from hybrid_pose.synthetic import generate_synthetic  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1")
SCRIPT = Path(sys.executable).parent / "hybrid-pose"


def run(*args, timeout=300):
    "`python -m hybrid_pose.cli ARGS` (= `hybrid-pose ARGS`) in a fresh process."
    return subprocess.run([sys.executable, "-m", "hybrid_pose.cli", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(res, *needles):
    "Exit status 2, no traceback, and a single `hybrid-pose …: error: …` line naming the problem."
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = [l for l in res.stderr.splitlines() if ": error: " in l]
    assert len(lines) == 1, res.stderr
    for n in needles: assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    "One synthetic person, its silhouette box, and copies of its image under two names."
    root = tmp_path_factory.mktemp("pred")
    generate_synthetic(root / "data/synthetic", 1, seed=0, progress=False)
    img = root / "data/synthetic/images/im0001.jpg"
    m = np.asarray(Image.open(root / "data/synthetic/masks/im0001_segmentation.png")) > 0
    ys, xs = np.nonzero(m)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    shutil.copy(img, root / "a.jpg")
    Image.open(img).save(root / "b.png")
    return dict(root=root, img=img, bbox=bbox, image=np.asarray(Image.open(img).convert("RGB")))


@pytest.fixture(scope="module")
def small_ckpt(data):
    "A checkpoint made here: a ResNet-18 network whose Θ₀ has camera scale 0.5 (the untrained one: 0.9)."
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net = HybridPoseNet("resnet18", pretrained=False)
    with torch.no_grad(): net.regressor.theta0[0, 0] = 0.5
    path = save_network(net, data["root"] / "small.pt", dict(img_size=224), body="open")
    return path, net.eval()


def test_predict_untrained_two_images(data):
    out = data["root"] / "out_untrained"
    res = run("predict", data["root"] / "a.jpg", data["root"] / "b.png", "--bbox", *data["bbox"], "--format", "ply",
              "--out", out, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "meaningless" in res.stderr and "Traceback" not in res.stderr          # the untrained network says so
    assert "2/2" in res.stderr                                                      # the progress bar
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.ply", "a_overlay.png", "b.json", "b.ply", "b_overlay.png"]
    H, W = data["image"].shape[:2]
    j = json.loads((out / "a.json").read_text())
    assert j["checkpoint"] is None and j["trained"] is False and j["body_model"] == "open"
    assert j["source"].endswith("a.jpg") and j["image_size"] == [H, W] and j["mesh"]["format"] == "ply"
    theta = np.concatenate([j["theta"]["cam"], j["theta"]["pose"], j["theta"]["betas"]]).astype(np.float32)
    np.testing.assert_array_equal(theta, mean_theta().numpy())                      # Θ₀ exactly
    # the crop: BBOX_SCALE × the box's longer side, around its centre
    x0, y0, x1, y1 = data["bbox"]
    np.testing.assert_allclose(j["crop"]["center"], [(x0 + x1) / 2, (y0 + y1) / 2])
    np.testing.assert_allclose(j["crop"]["box_size"], P.BBOX_SCALE * max(x1 - x0, y1 - y0))
    # the mesh, in the y-up frame: upright (head above feet) in a viewer
    v, f = P.read_ply(out / "a.ply")
    assert v.shape == (13718, 3) and f.shape == (27420, 3) and f.min() == 0 and f.max() == len(v) - 1
    j3 = np.array(j["joints"]["joints3d"])                                         # camera frame: y down
    assert j3[13, 1] < j3[0, 1]                                                     # head top above the ankle in the image
    assert abs(v[:, 1].max() - (-j3[13, 1])) < 0.05                                 # y-up: the head top is the highest point
    assert v[:, 1].min() < -j3[0, 1] < -j3[13, 1]                                   # the feet at the bottom
    trimesh = pytest.importorskip("trimesh")                                        # an independent PLY reader
    tm = trimesh.load(out / "a.ply", process=False)
    np.testing.assert_array_equal(np.asarray(tm.vertices, np.float32), v)
    np.testing.assert_array_equal(np.asarray(tm.faces), f)
    # the overlay: the image's size plus the footnote strip below, changed only inside the crop, and only where the mesh is
    assert j["trained_on"] == "untrained: mean pose Θ₀ (no checkpoint)"
    png = np.asarray(Image.open(out / "a_overlay.png"))
    assert png.shape[0] > H and png.shape[1:] == (W, 3)
    assert (png[H:] != P.FOOTNOTE_COLORS[0]).any(-1).sum() > 50                      # the footnote is drawn
    ov = png[:H]
    changed = (ov.astype(int) != data["image"].astype(int)).any(-1)
    ys, xs = np.nonzero(changed)
    (cx, cy), b = j["crop"]["center"], j["crop"]["box_size"]
    assert xs.min() >= cx - b / 2 and xs.max() < cx + b / 2 and ys.max() < cy + b / 2
    j2 = np.array(j["joints"]["joints2d"])
    inside = (j2[:, 0] >= 0) & (j2[:, 0] < W) & (j2[:, 1] >= 0) & (j2[:, 1] < H)
    r, c = j2[inside, 1].astype(int), j2[inside, 0].astype(int)
    assert changed[r, c].mean() > 0.8                                                # the joints lie on the drawn body
    # the PNG copy of the same picture gives the same answer
    jb = json.loads((out / "b.json").read_text())
    np.testing.assert_allclose(jb["joints"]["joints2d"], j["joints"]["joints2d"], atol=1e-3)


def test_checkpoint_is_honoured(data, small_ckpt):
    path, net = small_ckpt
    out = data["root"] / "out_ckpt"
    res = run("predict", data["img"], "--checkpoint", path, "--out", out, "--device", "cpu", "--mesh-frame", "camera")
    assert res.returncode == 0, res.stderr
    assert "meaningless" not in res.stderr
    j = json.loads((out / "im0001.json").read_text())
    assert j["checkpoint"] == str(path) and j["trained"] is True and j["weights"] == net.weights
    # Θ is what this very network says about the whole-image crop (computed here, independently)
    img = data["image"]
    H, W = img.shape[:2]
    x = normalize_image(crop_image(img, (W / 2, H / 2), max(H, W), 224))[None]
    with torch.no_grad(): expected = net(x)[-1][0].numpy()
    got = np.concatenate([j["theta"]["cam"], j["theta"]["pose"], j["theta"]["betas"]])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert abs(got[0] - 0.5) < 0.1                                                  # the scale comes from Θ₀ = 0.5
    # and the body in the picture is smaller than the untrained network's (scale 0.9), by about 0.5/0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = P.predict(img, device="cpu")
    h = lambda j2: np.ptp(np.asarray(j2)[:, 1])
    ratio = h(j["joints"]["joints2d"]) / h(ref.joints2d)
    assert 0.4 < ratio < 0.7, ratio
    assert j["trained_on"].startswith("trained: ") and "open body model" in j["trained_on"]
    png = np.asarray(Image.open(out / "im0001_overlay.png"))
    ov = png[:H]
    area = (ov.astype(int) != img.astype(int)).any(-1).sum()
    area_ref = (ref.overlay.astype(int) != img.astype(int)).any(-1).sum()
    assert area < 0.5 * area_ref, (area, area_ref)
    # the mesh file: the camera frame as asked, the prediction's vertices bit for bit
    v, f = P.read_obj(out / "im0001.obj")
    assert v.shape == (13718, 3) and f.shape == (27420, 3)
    r = P.Predictor(path, device="cpu")([img], overlay=False)[0]
    np.testing.assert_allclose(v, r.vertices, atol=1e-5)


def test_bad_inputs_exit_2(data, small_ckpt, capsys, tmp_path):
    # in a fresh process: exit status and no traceback
    one_line_error(run("predict", tmp_path / "missing.jpg", "--out", tmp_path / "o"), "missing.jpg", "does not exist")
    assert not (tmp_path / "o").exists()
    # the same code path in this process, for the other mistakes
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 100)
    torch.save(small_ckpt[1].state_dict(), tmp_path / "bare.pt")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    img = str(data["img"])
    cases = [
        (["predict", img, "--checkpoint", tmp_path / "garbage.pt"], ["garbage.pt", "weights_only=True"]),
        (["predict", img, "--checkpoint", tmp_path / "nope.pt"], ["nope.pt", "does not exist"]),
        (["predict", img, "--checkpoint", tmp_path / "bare.pt"], ["bare.pt", "a bare state_dict"]),
        (["predict", img, "--bbox", "50", "10", "20", "90"], ["reversed", "x1 > x0"]),
        (["predict", img, "--bbox", "5000", "10", "6000", "90"], ["outside the"]),
        (["predict", img, "--bbox", "0", "0", "10", "10", "--bbox-scale", "-1"], ["positive"]),
        (["predict", img, str(data["root"] / "a.jpg"), str(data["root"] / "data/synthetic/images/../images/im0001.jpg")],
         ["im0001", "overwrite each other"]),
        (["predict", img, "--device", "nonsense"], ["nonsense", "'cpu'"]),
        (["train", "--config", tmp_path / "none.toml"], ["none.toml", "does not exist"]),
        (["evaluate", "--checkpoint", tmp_path / "none.pt"], ["none.pt", "does not exist"]),
    ]
    if not torch.cuda.is_available(): cases.append((["predict", img, "--device", "cuda"], ["CUDA is not available"]))
    for args, needles in cases:
        code = cli.main([str(a) for a in args] + ["--out", str(tmp_path / "o")] * (args[0] == "predict"))
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        lines = [l for l in err.splitlines() if ": error: " in l]
        assert len(lines) == 1 and "Traceback" not in err, (args, err)
        for n in needles: assert n in lines[0], (args, n, lines[0])
    # a broken image among good ones: the good one is still written, the run reports the bad one and exits 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(["predict", img, str(tmp_path / "broken.jpg"), "--out", str(tmp_path / "mixed"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "broken.jpg cannot be decoded" in err and "1 of 2 images failed" in err
    assert sorted(p.name for p in (tmp_path / "mixed").iterdir()) == ["im0001.json", "im0001.obj", "im0001_overlay.png"]
    # argparse's own errors (a box that is not 4 numbers) are status 2 as well
    with pytest.raises(SystemExit) as e: cli.main(["predict", img, "--bbox", "1", "2", "x", "4"])
    assert e.value.code == 2


def test_evaluate_command(data, small_ckpt, tmp_path, capsys):
    "`evaluate` on the synthetic person with the checkpoint made here (once hybrid_pose.evaluate exists)."
    pytest.importorskip("hybrid_pose.evaluate")
    path, _ = small_ckpt
    code = cli.main(["evaluate", "--checkpoint", str(path), "--data-root", str(data["root"] / "data"), "--dataset",
                   "synthetic", "--split", "all", "--workers", "0", "--device", "cpu", "--no-progress",
                   "--out", str(tmp_path / "table.csv")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "|" in out.out                                                          # the Markdown table
    assert "nearest pose by the network's own predicted 2D keypoints (no test-time truth)" in out.out   # retrieval fed the run
    rows = (tmp_path / "table.csv").read_text().strip().splitlines()
    assert len(rows) == 2                                                           # a header and the one image
    assert cli.main(["evaluate", "--checkpoint", str(path), "--data-root", str(tmp_path / "empty"), "--dataset",
                   "synthetic", "--split", "val", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "empty" in err and "hybrid_pose.synthetic" in err


def test_user_reports_installed_command(data, tmp_path):
    "What a user hit with `hybrid-pose predict` (`python -m hybrid_pose.cli`, which the installed script runs; it calls "
    "predict.predict_command): one-line errors, not silence or tracebacks; folders and 16-bit PNGs read."
    pytest.importorskip("hybrid_pose.cli")
    img = data["img"]
    def sh(*args): return subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "predict", *map(str, args)], cwd=ROOT,
                                         env=ENV, capture_output=True, text=True, timeout=300)
    one_line_error(sh(img, "--batch-size", -1, "--out", tmp_path / "o1"), "whole number >= 1", "-1")   # was: exit 0, nothing
    one_line_error(sh(img, "--batch-size", 0, "--out", tmp_path / "o1"), "whole number >= 1")          # was: a traceback
    one_line_error(sh(img, "--out", img), "is an existing file")                                        # was: a traceback
    one_line_error(sh(img, "--bbox", 0, 0, 1e30, 1e30, "--out", tmp_path / "o1"), "beyond")             # was: a traceback
    assert not (tmp_path / "o1").exists()
    # a folder as IMAGE (was: "does not exist"), holding a 16-bit PNG (was: 90 % white)
    d = tmp_path / "pics"; d.mkdir()
    shutil.copy(img, d / "a.jpg")
    g = data["image"].mean(-1)
    Image.fromarray((g * 257).round().astype(np.uint16)).save(d / "b16.png")
    res = sh(d, "--out", tmp_path / "o2", "--no-progress", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == ["a.json", "a.obj", "a_overlay.png", "b16.json",
                                                                   "b16.obj", "b16_overlay.png"]
    H = data["image"].shape[0]
    ov_a, ov_b = (np.asarray(Image.open(tmp_path / f"o2/{n}_overlay.png"))[:H].astype(float) for n in ("a", "b16"))
    err = np.abs(ov_b.mean(-1) - ov_a.mean(-1)).mean()                            # the grey of the colour photo, not white
    assert err < 2, err
    one_line_error(sh(tmp_path / "o2", d / "nothing_here", "--out", tmp_path / "o3"), "nothing_here", "does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(sh(tmp_path / "empty", "--out", tmp_path / "o3"), "holds no images")


def test_an_image_over_the_size_limit_says_so(tmp_path, capsys):
    "An image over `data.MAX_IMAGE_PIXELS` is one line that says it is too large (not 'cannot be decoded ... re-download')."
    Image.new("1", (12000, 9000)).save(tmp_path / "big.png")              # 108 megapixels in a few kB
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(["predict", str(tmp_path / "big.png"), "--out", str(tmp_path / "o"), "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if ": error: " in l]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "12000×9000 pixels" in lines[0] and "too large" in lines[0] and "re-download" not in lines[0], lines[0]
