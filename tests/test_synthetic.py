"""hybrid_pose.synthetic beyond the notebook's checks: the data check and split of data.py, masks and parts against a
fresh full-image render, byte-identical determinism with gaps and half-written images, the command, and z-buffer
visibility on more hand-made poses and on every generated joint."""
import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid_pose import synthetic as S  # noqa: E402
from hybrid_pose.body import LSP_JOINT_NAMES, SMPL_JOINT_NAMES, load_body_model  # noqa: E402
from hybrid_pose.data import PoseDataset, read_joints  # noqa: E402
from hybrid_pose.datacheck import check_synthetic  # noqa: E402
from hybrid_pose.render import silhouette, part_segmentation, body_part_labels, to_screen, rasterize  # noqa: E402

N = 4


@pytest.fixture(scope="module")
def body():
    return load_body_model("open")


@pytest.fixture(scope="module")
def made(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("syn") / "data"
    r = S.generate_synthetic(root / "synthetic", N, seed=0, body=body, progress=False)
    return root, r


def _digest(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _files(out):
    out = Path(out)
    return {str(p.relative_to(out)): _digest(p) for p in sorted(out.rglob("*")) if p.is_file()}


def test_layout_and_reader(made):
    root, r = made
    assert r == dict(made=N, skipped=0, total=N)
    out = root / "synthetic"
    for n in range(1, N + 1):
        assert (out / "images" / f"im{n:04d}.jpg").is_file()
        assert (out / "masks" / f"im{n:04d}_segmentation.png").is_file()
        assert (out / "masks" / f"im{n:04d}_part_segmentation.png").is_file()
    assert not list(out.rglob("*.tmp"))
    j = read_joints(out / "joints.mat", "lsp")
    assert j.shape == (N, 14, 3)
    ds = PoseDataset(root, dataset="synthetic", split="all", strict=True)
    assert len(ds) == N and ds.has_parts
    sample = ds[0]
    assert sample["image"].shape == (3, 224, 224) and sample["mask"].any() and sample["parts"].max() <= 6
    # the default 90/10 split of data.py applies
    assert len(PoseDataset(root, dataset="synthetic", split="val")) == 1
    chk = check_synthetic(out)
    assert chk.status == "present", chk.problems


def test_masks_match_fresh_render(made, body):
    root, _ = made
    z = dict(np.load(root / "synthetic/truth.npz"))
    ds = PoseDataset(root, dataset="synthetic", split="all")
    labels = body_part_labels(body)
    for i in range(N):
        s = ds.read(i)
        with torch.no_grad():
            v = body(torch.tensor(z["pose"][i])[None], torch.tensor(z["betas"][i])[None]).vertices
        H, W = (int(x) for x in z["image_hw"][i])
        vs = to_screen(v, torch.tensor(z["cam"][i])[None].float(), float(z["box_size"][i]))
        vs = vs + vs.new_tensor([*(z["center"][i] - z["box_size"][i] / 2), 0])
        m = silhouette(vs, body.faces, (H, W))[0].numpy()
        iou = (m & s["mask"]).sum() / (m | s["mask"]).sum()
        assert iou > 0.99, iou
        parts = part_segmentation(vs, body.faces, labels, (H, W))[0].numpy()
        assert (parts == s["parts"]).mean() > 0.995
        # the person is about 150 px (LSP), the silhouette is in the picture
        ys, xs = np.nonzero(s["mask"])
        assert 90 < max(np.ptp(ys), np.ptp(xs)) < 220


def test_deterministic_chunks_and_resume(made, tmp_path, body):
    root, _ = made
    ref = _files(root / "synthetic")
    b = tmp_path / "b/synthetic"
    S.generate_synthetic(b, 3, seed=0, start=2, body=body, progress=False)     # 2-4 first: a gap at 1
    jm = read_joints(b / "joints.mat")
    assert jm.shape[0] == 4 and (jm[0, :, 2] == 0).all()                         # the missing one: occluded
    assert not np.load(b / "truth.npz")["valid"][0]
    S.generate_synthetic(b, 1, seed=0, start=1, body=body, progress=False)
    assert _files(b) == ref                                                     # every file, byte for byte
    # resume: a half-done image (record missing) is remade, the others are skipped
    (b / "records/im0003.npz").unlink()
    (b / "images/im0003.jpg").write_bytes(b"broken")
    r = S.generate_synthetic(b, N, seed=0, body=body, progress=False)
    assert r == dict(made=1, skipped=N - 1, total=N)
    assert _files(b) == ref
    # another seed: other people
    c = tmp_path / "c/synthetic"
    S.generate_synthetic(c, 1, seed=1, body=body, progress=False)
    assert _digest(c / "images/im0001.jpg") != ref["images/im0001.jpg"]


def test_command(tmp_path):
    out = tmp_path / "data/synthetic"
    res = subprocess.run([sys.executable, "-m", "hybrid_pose.synthetic", "--n", "2", "--out", str(out), "--seed", "0",
                          "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "made 2" in res.stdout
    assert read_joints(out / "joints.mat").shape == (2, 14, 3)
    res = subprocess.run([sys.executable, "-m", "hybrid_pose.synthetic", "--n", "2", "--out", str(out), "--start", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "--start" in res.stderr


def _rest(yaw=0.0, **rot):
    pose = torch.zeros(72)
    r = Rotation.from_rotvec([math.pi, 0, 0]) * Rotation.from_euler("y", yaw, degrees=True)
    pose[:3] = torch.from_numpy(r.as_rotvec())
    for name, rv in rot.items():
        i = SMPL_JOINT_NAMES.index(name)
        pose[3 * i:3 * i + 3] = torch.tensor(rv)
    return pose


ARMS_DOWN = dict(left_shoulder=[0, 0, -1.2], right_shoulder=[0, 0, 1.2])


def _hidden(vis):
    return {LSP_JOINT_NAMES[i] for i in range(14) if not vis[i]}


def test_visibility_hand_made(body):
    assert _hidden(S.visibility_of(body, _rest(**ARMS_DOWN))) == set()
    # the right arm stretched straight back, behind the torso: its wrist and elbow are hidden
    assert _hidden(S.visibility_of(body, _rest(**ARMS_DOWN | dict(right_shoulder=[0, -1.5, 0])))) == {"right_wrist", "right_elbow"}
    # the same arm pointing straight at the camera: the hand is in front, the elbow and shoulder hide behind it
    fwd = _hidden(S.visibility_of(body, _rest(**ARMS_DOWN | dict(right_shoulder=[0, 1.5, 0]))))
    assert {"right_elbow", "right_shoulder"} <= fwd and not fwd & {"right_wrist", "head_top", "left_wrist", "left_elbow"}
    # seen from the side, the far side's limbs hide behind the near side
    side = _hidden(S.visibility_of(body, _rest(-90, **ARMS_DOWN)))
    assert {"right_wrist", "right_elbow", "right_ankle"} <= side
    assert not side & {"left_wrist", "left_elbow", "left_ankle", "head_top"}


def test_visibility_matches_zbuffer_in_generated_images(made, body):
    root, _ = made
    z = dict(np.load(root / "synthetic/truth.npz"))
    for i in range(N):
        with torch.no_grad():
            v = body(torch.tensor(z["pose"][i])[None], torch.tensor(z["betas"][i])[None]).vertices
        H, W = (int(x) for x in z["image_hw"][i])
        scr = S.to_image(v[0], z["cam"][i], z["center"][i], z["box_size"][i])[None]
        depth = rasterize(scr, body.faces, (H, W)).depth[0]
        j = S.to_image(torch.tensor(z["joints3d"][i]), z["cam"][i], z["center"][i], z["box_size"][i])
        for k in range(14):
            c, r = int(math.floor(j[k, 0])), int(math.floor(j[k, 1]))
            inside = 0 <= c < W and 0 <= r < H
            vis = inside and not bool(depth[r, c] < j[k, 2] - S.SyntheticConfig().margin)
            assert vis == bool(z["visible"][i, k]), (i, k)


def test_joint_visibility_unit():
    dep = torch.full((4, 5), math.inf)
    dep[1, 2] = 0.0
    j = torch.tensor([[2.5, 1.5, 0.3], [2.5, 1.5, 0.1], [-0.5, 1.0, 0.0], [1.5, 1.5, 0.0]])
    assert S.joint_visibility(j, dep, (4, 5)).tolist() == [False, True, False, True]
    # a window at an offset reads the same pixels
    assert S.joint_visibility(j + torch.tensor([10., 20., 0.]), dep, (40, 50), origin=(10, 20)).tolist() == [False, True, True, True]


def test_synth_poses_records_the_sampler_and_refuses_unknown_ones(tmp_path):
    import json, subprocess, sys
    r = subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "synth", "--n", "2", "--out", str(tmp_path / "ho"),
                        "--poses", "natural_heldout", "--seed", "3", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    rec = json.loads((tmp_path / "ho" / "people.json").read_text())
    from hybrid_pose.natural_poses import activity_split
    assert rec == [dict(images=[1, 2], seed=3, pose_sampler="natural_heldout", pose_options={}, betas_std=1.0,
                        activity_split=dict(seed=20, **activity_split()))]
    r = subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "synth", "--n", "2", "--out", str(tmp_path / "x"),
                        "--poses", "natural_holdout"], capture_output=True, text=True)
    assert r.returncode == 2 and "--poses 'natural_holdout' is not a pose sampler" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x" / "images").exists()
