"""BVH motion capture from the outside: hand-written files whose joint positions are known in closed form (two
channel orders), bad files named by line, a take written from body poses and retargeted back, and the pose file
that the critic's readers take."""
import numpy as np
import pytest
import torch

from hybrid_pose import mocap as M
from hybrid_pose.base import UsageError
from hybrid_pose.body import SMPL_JOINT_NAMES, load_body_model
from hybrid_pose.poses import JointLimitSampler, read_pose_npz, read_poses


def chain(order: str, frames: list) -> str:
    "Root R (6 channels, rotations in `order`), child S one unit up (rotations in `order`), End Site one unit along +x."
    rot = " ".join(f"{a}rotation" for a in order)
    return (f"HIERARCHY\nROOT R\n{{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition {rot}\n"
            f" JOINT S\n {{\n  OFFSET 0 1 0\n  CHANNELS 3 {rot}\n  End Site\n  {{\n   OFFSET 1 0 0\n  }}\n }}\n}}\n"
            f"MOTION\nFrames: {len(frames)}\nFrame Time: 0.0083333\n" + "\n".join(" ".join(map(str, f)) for f in frames) + "\n")


def rot(axis, deg):
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


@pytest.mark.parametrize("order", ["ZXY", "XYZ"])
def test_chain_positions_in_closed_form(tmp_path, order):
    # 90° steps, so every position is a small integer vector: the root turns 90° about its first and second axes,
    # the child 90° about its third; R = R_a(α) R_b(β) R_c(γ) in channel order
    a, b, c = order
    frames = [[5, 0, 0, 90, 0, 0, 0, 0, 0], [0, 0, 0, 90, 90, 0, 0, 0, 90], [1, 1, 1, 0, 0, 0, 0, 0, 0]]
    f = tmp_path / "chain.bvh"; f.write_text(chain(order, frames))
    p, _ = M.forward_kinematics(M.read_bvh(f))
    up, x = np.array([0, 1, 0]), np.array([1, 0, 0])
    for t, fr in enumerate(frames):
        Rr = rot(a, fr[3]) @ rot(b, fr[4]) @ rot(c, fr[5])
        Rs = rot(a, fr[6]) @ rot(b, fr[7]) @ rot(c, fr[8])
        root = np.array(fr[:3], float)
        np.testing.assert_allclose(p[t], np.stack([root, root + Rr @ up, root + Rr @ up + Rr @ Rs @ x]), atol=1e-9)
    # by hand, ZXY frame 1: R_z(90) R_x(90) takes (0,1,0) to (0,0,1); S adds R_y(90): x -> (0,0,-1) -> R_x (0,1,0) -> R_z (-1,0,0)
    if order == "ZXY":
        np.testing.assert_allclose(p[1], [[0, 0, 0], [0, 0, 1], [-1, 0, 1]], atol=1e-9)
    assert M.read_bvh(f).fps == pytest.approx(120, rel=1e-3)


def test_bad_files_name_file_and_line(tmp_path):
    good = chain("ZXY", [[0] * 9, [0] * 9])
    cases = {"offset.bvh": (good.replace("OFFSET 0 1 0", "OFFSET 0 1"), ":9:"),     # "CHANNELS" (line 9) where a number belongs
             "frames.bvh": (good.replace("Frames: 2", "Frames: 3"), ":20:"),
             "short.bvh": (good.rstrip("\n").rsplit(" ", 1)[0] + "\n", ":20:"),
             "word.bvh": (good.replace("0 0 0 0 0 0 0 0 0\n", "0 0 0 0 0 0 0 0 x\n", 1), ":19:"),
             "nohier.bvh": ("ROOT R\n" + good, ":1:")}
    for name, (text, line) in cases.items():
        f = tmp_path / name; f.write_text(text)
        with pytest.raises(M.BVHError, match=rf"{name}{line} ") as e:
            M.read_bvh(f)
        assert "\n" not in str(e.value) and isinstance(e.value, UsageError)
    (tmp_path / "bin.bvh").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(M.BVHError, match=r"bin\.bvh:1: not a text file"):
        M.read_bvh(tmp_path / "bin.bvh")


@pytest.fixture(scope="module")
def body():
    return load_body_model("open", dtype=torch.float64)


def test_body_take_round_trip_within_a_centimetre(tmp_path, body):
    pose, _ = JointLimitSampler(spread=0.6).sample(24, torch.Generator().manual_seed(7))
    pose = pose.double(); betas = torch.zeros(24, 10, dtype=torch.float64)
    truth = M.body_joints(body, pose, betas)
    sk, motion = M.body_to_bvh(body, pose, betas[0], order="XYZ")
    f = M.write_bvh(tmp_path / "take.bvh", sk, motion, 1 / 12)
    take = M.read_bvh(f)
    pos, _ = M.forward_kinematics(take)
    order = [take.skeleton.index(n) for n in SMPL_JOINT_NAMES]
    np.testing.assert_allclose(pos[:, order] * 0.01, truth.numpy(), atol=1e-6)
    fit, kept = M.retarget_bvh(take, body, corr="smpl", target_fps=12, min_change=0)
    assert len(kept) == 24
    err = (M.body_joints(body, fit.pose, fit.betas) - truth).norm(dim=-1).mean(1)
    assert err.mean() < 0.01, f"mean joint error {err.mean() * 1000:.1f} mm"
    assert fit.scale.mean().item() == pytest.approx(0.01, rel=0.01)        # centimetres found to be centimetres


def test_cmu_layout_take_to_pose_file(tmp_path, body):
    sk = M.cmu_like_skeleton(body, unit=0.0564)
    rng = np.random.default_rng(0)
    motion = np.zeros((240, sk.n_channels)); motion[:, 1] = 17.7
    motion[:, 6:] = np.cumsum(rng.normal(0, 0.4, (240, sk.n_channels - 6)), 0).clip(-20, 20)  # a slow random wander
    M.write_bvh(tmp_path / "01_01.bvh", sk, motion)
    fit, kept = M.retarget_bvh(tmp_path / "01_01.bvh", body, steps=150)
    assert 1 < len(kept) <= 24 and (np.diff(kept) >= 10).all()               # about 12 of 120 frames a second, or fewer
    assert fit.error.max() < 0.03 and fit.angle.mean() < 5
    assert fit.scale.mean().item() == pytest.approx(0.0564, rel=0.03)
    out = M.save_retargeted(tmp_path / "cmu.npz", [("01/01_01.bvh", fit, kept)])
    for ps in (read_pose_npz(out), read_poses(out)):
        assert ps.poses.shape == (len(kept), 72) and ps.betas.shape == (len(kept), 10)
    with pytest.raises(UsageError, match="has no joint 'LeftUpLeg'"):
        M.retarget_bvh(M.parse_bvh(chain("ZXY", [[0] * 9]), "c.bvh"), body)


# --- data_scripts/get_cmu_mocap.py against a local fake of the pinned repository -------------------------------------
def _load_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "data_scripts" / "get_cmu_mocap.py"
    spec = importlib.util.spec_from_file_location("_get_cmu_mocap", path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fake_repo(tmp_path_factory, body):
    "A folder laid out like the pinned commit (three takes of subjects 1, 2 and 10), and its tree listing."
    g = _load_script()
    root = tmp_path_factory.mktemp("cmu")
    sk = M.cmu_like_skeleton(body, unit=0.0564)
    rng = np.random.default_rng(1)
    tree = [{"path": "README.md", "type": "blob", "sha": "0" * 40, "size": 3}, {"path": "001", "type": "tree", "sha": "1" * 40}]
    for i, path in enumerate(["001/01_01.bvh", "002/02_01.bvh", "010/10_01.bvh"]):
        m = np.zeros((60, sk.n_channels)); m[:, 1] = 17.7
        m[:, 6:] = np.cumsum(rng.normal(0, 0.5, (60, sk.n_channels - 6)), 0).clip(-15, 15)
        f = M.write_bvh(root / "src" / path, sk, m)
        tree.append({"path": path, "type": "blob", "sha": g.blob_sha1(f.read_bytes()), "size": f.stat().st_size})
    (root / "tree.json").write_text(__import__("json").dumps({"sha": "t", "tree": tree, "truncated": False}))
    return g, root


def _args(root, data, *extra):
    return ["--data-root", str(data), "--listing", (root / "tree.json").as_uri(), "--raw", (root / "src").as_uri() + "/",
            "--min-takes", "1", "--steps", "60", "--quiet", *extra]


def test_get_cmu_mocap_downloads_verifies_and_retargets(fake_repo, tmp_path, capsys):
    g, root = fake_repo
    assert g.main(_args(root, tmp_path, "--subjects", "1-10")) == 0
    out = tmp_path / "cmu_mocap"
    assert sorted(str(p.relative_to(out / "bvh")) for p in (out / "bvh").rglob("*.bvh")) == ["001/01_01.bvh", "002/02_01.bvh", "010/10_01.bvh"]
    train, held = read_pose_npz(out / "cmu_train.npz"), read_pose_npz(out / "cmu_heldout.npz")
    assert len(train) > 0 and len(held) > 0                                    # subject 10 is held out
    with np.load(out / "cmu_heldout.npz") as z: assert list(z["takes"]) == ["010/10_01.bvh"]
    before = (out / "cmu_train.npz").read_bytes()
    (out / "bvh" / "002" / "02_01.bvh").unlink()                               # resumable: only what is missing is fetched
    assert g.main(_args(root, tmp_path, "--subjects", "1-10")) == 0
    assert (out / "bvh" / "002" / "02_01.bvh").is_file() and (out / "cmu_train.npz").read_bytes() == before  # fits cached


def test_get_cmu_mocap_selection_and_bad_input(fake_repo, tmp_path, capsys):
    g, root = fake_repo
    assert g.main(_args(root, tmp_path, "--subjects", "2", "--no-retarget")) == 0
    assert [p.name for p in (tmp_path / "cmu_mocap" / "bvh").rglob("*.bvh")] == ["02_01.bvh"]
    assert g.main(_args(root, tmp_path / "b", "--subjects", "all", "--max-files", "2", "--no-retarget")) == 0
    assert len(list((tmp_path / "b" / "cmu_mocap" / "bvh").rglob("*.bvh"))) == 2
    capsys.readouterr()
    for extra, msg in ((["--subjects", "x-3"], "--subjects 'x-3'"), (["--subjects", "50"], "no takes of these subjects"),
                       (["--max-files", "-1"], "--max-files -1"), (["--commit", "abc"], "--commit 'abc'")):
        assert g.main(_args(root, tmp_path / "c", *extra)) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    args = _args(root, tmp_path / "d"); args[args.index("--listing") + 1] = (root / "nope.json").as_uri()
    assert g.main(args) == 2                                                   # a listing that cannot be had
    assert "tree listing" in capsys.readouterr().err
    assert g.main(_args(root, tmp_path / "e", "--min-takes", "5")) == 1          # an incomplete layout is refused
    assert "34e1472e" in capsys.readouterr().err


def test_get_cmu_mocap_content_mismatch_is_refused(fake_repo, tmp_path, capsys):
    g, root = fake_repo
    import json, shutil
    src = tmp_path / "src"; shutil.copytree(root / "src", src)
    f = src / "002" / "02_01.bvh"; f.write_text(f.read_text() + "\n")                             # one byte more than the pinned blob
    assert g.main(["--data-root", str(tmp_path), "--listing", (root / "tree.json").as_uri(), "--raw", src.as_uri(),
                   "--min-takes", "1", "--no-retarget", "--quiet"]) == 1
    assert "02_01.bvh: content does not match the pinned tree" in capsys.readouterr().err
    assert not (tmp_path / "cmu_mocap" / "bvh" / "002" / "02_01.bvh").exists()
    assert g.blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"   # git hash-object of "hello\n"


def test_fitting_one_shape_per_take_lowers_the_error(body):
    pose, _ = JointLimitSampler(spread=0.5).sample(16, torch.Generator().manual_seed(3))
    beta = torch.zeros(16, 10, dtype=torch.float64); beta[:, 0], beta[:, 1] = 2.0, -1.5        # not the mean body
    J = M.body_joints(body, pose.double(), beta)
    fixed, fitted = (M.retarget(body, J, "smpl", fit_betas=f, steps=200) for f in (False, True))
    assert fitted.error.mean() < 0.8 * fixed.error.mean()
    assert (fitted.betas == fitted.betas[0]).all() and fitted.betas.abs().sum() > 0              # one β for the take
