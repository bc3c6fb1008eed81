"""Pose data for the critic from the outside: MoSh records written here by an independent minimal writer, AMASS and
plain files (orientation, shapes, AMASS shape files), shuffled streams and bad input. The joint-limit sampler and the
plausibility measure are checked in 04_poses itself."""
import pickle, struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid_pose import poses as P


# --- an independent TFRecord / tf.train.Example writer (bitwise CRC, hand-assembled protobuf) -------------------
def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8): crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    c = crc32c_bitwise(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(n: int) -> bytes:
    out = b""
    while n > 0x7F: out += bytes([n & 0x7F | 0x80]); n >>= 7
    return out + bytes([n])


def ld(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


def float_feature(values, packed=True) -> bytes:
    v = np.asarray(values, "<f4")
    lst = ld(0x0A, v.tobytes()) if packed else b"".join(b"\x0d" + x.tobytes() for x in v)
    return ld(0x12, lst)                                # Feature.float_list = 2


def example(features: dict) -> bytes:
    entries = b"".join(ld(0x0A, ld(0x0A, k.encode()) + ld(0x12, f)) for k, f in features.items())
    return ld(0x0A, entries)                            # Example.features = 1


def frame(payload: bytes) -> bytes:
    hdr = struct.pack("<Q", len(payload))
    return hdr + struct.pack("<I", masked(hdr)) + payload + struct.pack("<I", masked(payload))


def mosh_file(path: Path, poses, shapes, packed=True, extra=False) -> Path:
    recs = []
    for p, s in zip(poses, shapes):
        feats = {"shape": float_feature(s, packed), "pose": float_feature(p, packed)}
        if extra: feats["frame"] = ld(0x1A, ld(0x0A, varint(7)))   # an int64 feature the reader must ignore
        recs.append(frame(example(feats)))
    path.write_bytes(b"".join(recs))
    return path


def rand_mosh(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.4, (n, 72)).astype(np.float32), rng.normal(0, 1, (n, 10)).astype(np.float32)


# --- TFRecord / MoSh -------------------------------------------------------------------------------------------
def test_mosh_records_written_independently_read_back(tmp_path):
    poses, shapes = rand_mosh(7, 0)
    f = mosh_file(tmp_path / "neutrSMPL_CMU_000.tfrecord", poses, shapes)
    assert f.stat().st_size == 7 * 380                   # HMR's record size: 364 payload + 16 framing bytes
    ps = P.read_poses(f, y_up=False)
    np.testing.assert_array_equal(ps.poses, poses); np.testing.assert_array_equal(ps.betas, shapes)
    assert ps.skipped == Counter()
    g = mosh_file(tmp_path / "unpacked.tfrecord", poses, shapes, packed=False, extra=True)
    np.testing.assert_array_equal(P.read_poses(g, y_up=False).poses, poses)
    import gzip
    z = tmp_path / "neutrSMPL_CMU_001.tfrecord.gz"; z.write_bytes(gzip.compress(f.read_bytes()))
    np.testing.assert_array_equal(P.read_poses(z, y_up=False).poses, poses)     # GZIP-compressed record files


def test_mosh_frames_are_z_up_and_read_standing(tmp_path):
    # a body standing in a Z-up world: the root takes the body's up (+y) to +z, i.e. R_x(+90°), then a random heading
    # about the world's up (+z); read with the default, the root must take +y to +y again (only the heading remains)
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(7)
    heading = rng.uniform(-np.pi, np.pi, 5)
    roots = (Rotation.from_rotvec(np.c_[np.zeros(5), np.zeros(5), heading]) * Rotation.from_rotvec([np.pi / 2, 0, 0])).as_rotvec()
    poses, shapes = rand_mosh(5, 8); poses[:, :3] = roots
    f = mosh_file(tmp_path / "neutrSMPL_CMU_002.tfrecord", poses, shapes)
    with open(tmp_path / "seq.pkl", "wb") as fh: pickle.dump({"poses": poses.astype(np.float64), "betas": shapes[0]}, fh, protocol=2)
    for ps in (P.read_poses(f), P.read_poses(tmp_path / "seq.pkl")):
        up = Rotation.from_rotvec(ps.poses[:, :3]).apply([0, 1, 0])
        np.testing.assert_allclose(up, np.tile([0, 1, 0], (5, 1)), atol=1e-5)
        np.testing.assert_array_equal(ps.poses[:, 3:], poses[:, 3:])
    np.testing.assert_array_equal(P.read_poses(f).betas, shapes)             # MoSh's β are neutral SMPL's: kept


def test_our_writer_matches_the_independent_one(tmp_path):
    poses, shapes = rand_mosh(3, 1)
    a = mosh_file(tmp_path / "a.tfrecord", poses, shapes)
    b = P.write_tfrecord(tmp_path / "b.tfrecord", [P.example_bytes({"shape": s, "pose": p}) for p, s in zip(poses, shapes)])
    assert a.read_bytes() == b.read_bytes()


def test_corrupt_and_truncated_records(tmp_path):
    poses, shapes = rand_mosh(5, 2)
    raw = bytearray(mosh_file(tmp_path / "ok.tfrecord", poses, shapes).read_bytes())
    raw[380 + 50] ^= 0x40                                # record 1's payload
    bad = tmp_path / "bad.tfrecord"; bad.write_bytes(bytes(raw))
    ps = P.read_mosh_tfrecord(bad, y_up=False)
    assert len(ps) == 4 and ps.skipped == Counter(bad_crc=1)
    np.testing.assert_array_equal(ps.poses, poses[[0, 2, 3, 4]])
    with pytest.raises(ValueError, match=r"bad\.tfrecord @ byte 380: corrupt record"):
        P.read_mosh_tfrecord(bad, on_error="raise")
    assert len(P.read_mosh_tfrecord(bad, verify=False)) == 5   # payload CRCs unchecked: the flipped byte gets through
    trunc = tmp_path / "trunc.tfrecord"; trunc.write_bytes(bytes(raw[:4 * 380 + 100]))
    ps = P.read_mosh_tfrecord(trunc)
    assert len(ps) == 3 and ps.skipped == Counter(bad_crc=1, truncated=1)
    with pytest.raises(ValueError, match=r"trunc\.tfrecord @ byte 1520: truncated"):
        P.read_mosh_tfrecord(trunc, on_error="raise")


def test_wrong_features_are_counted(tmp_path):
    f = tmp_path / "odd.tfrecord"
    f.write_bytes(frame(example({"pose": float_feature(np.zeros(69)), "shape": float_feature(np.zeros(10))})) +
                  frame(example({"pose": float_feature(np.ones(72)), "shape": float_feature(np.zeros(10))})))
    ps = P.read_mosh_tfrecord(f)
    assert len(ps) == 1 and ps.skipped == Counter(bad_example=1)
    with pytest.raises(ValueError, match=r"odd\.tfrecord @ byte 0: not a MoSh example.*'pose'"):
        P.read_mosh_tfrecord(f, on_error="raise")


def test_mosh_pickle_through_restricted_unpickler(tmp_path):
    poses, shapes = rand_mosh(4, 3)
    with open(tmp_path / "seq.pkl", "wb") as fh:
        pickle.dump({"new_poses": poses.astype(np.float64), "betas": shapes[0].astype(np.float64), "trans": np.zeros((4, 3))},
                    fh, protocol=2)
    ps = P.read_poses(tmp_path / "seq.pkl", y_up=False)
    np.testing.assert_array_equal(ps.poses, poses); np.testing.assert_array_equal(ps.betas[3], shapes[0])

    class Boom:
        def __reduce__(self): return (Path.unlink, (tmp_path / "seq.pkl",))
    with open(tmp_path / "evil.pkl", "wb") as fh: pickle.dump({"poses": Boom(), "betas": np.zeros(10)}, fh, protocol=2)
    with pytest.raises(ValueError, match="refused to load"):
        P.read_poses(tmp_path / "evil.pkl")
    assert (tmp_path / "seq.pkl").exists()


# --- AMASS and plain arrays -------------------------------------------------------------------------------------
def test_amass_smplh_to_smpl(tmp_path):
    rng = np.random.default_rng(4)
    T = 6
    smplh = rng.normal(0, 0.3, (T, 156))
    smplh[:, :3] = [np.pi / 2, 0, 0]                    # standing in AMASS's Z-up world
    smplh[4, 40] = np.nan                               # a NaN in a body joint drops the frame ...
    smplh[1, 100] = np.nan                              # ... one in a finger joint (not used by SMPL) does not
    betas16 = rng.normal(size=16)
    f = tmp_path / "CMU_01_01_poses.npz"
    np.savez(f, poses=smplh, betas=betas16, trans=np.zeros((T, 3)), gender=np.array("male"),
             mocap_framerate=np.array(120.0), dmpls=np.zeros((T, 8)))
    ps = P.read_poses(f, y_up=False)
    keep = [0, 1, 2, 3, 5]
    assert ps.poses.shape == (5, 72) and ps.skipped == Counter(nonfinite=1)
    np.testing.assert_allclose(ps.poses[:, :66], smplh[keep, :66].astype(np.float32), atol=1e-6)
    np.testing.assert_array_equal(ps.poses[:, 66:], 0)            # SMPL's hands: not SMPL+H's index finger
    np.testing.assert_array_equal(ps.betas, 0)                    # gendered SMPL+H β are not neutral SMPL's: β = 0
    np.testing.assert_allclose(P.read_poses(f, betas="data").betas, np.tile(betas16[:10], (5, 1)).astype(np.float32), atol=1e-6)
    batch = next(iter(P.PoseStream([f], batch_size=5)))           # the stream's default ("data") passes the reader's β = 0 on
    assert torch.equal(batch.betas, torch.zeros(5, 10))
    up = P.read_poses(f)
    np.testing.assert_allclose(up.poses[:, :3], 0, atol=1e-6)      # Z-up → Y-up: upright again
    np.testing.assert_allclose(up.poses[:, 3:], ps.poses[:, 3:])
    assert len(P.read_poses(f, stride=2)) == 2                      # frames 0, 2 (4 holds the NaN)


def test_amass_shape_files_skipped_quietly(tmp_path, caplog):
    rng = np.random.default_rng(9)
    for subj in ("s1", "s2"):
        (tmp_path / subj).mkdir()
        np.savez(tmp_path / subj / "shape.npz", betas=rng.normal(size=16), gender=np.array("female"))
        np.savez(tmp_path / subj / "walk_poses.npz", poses=rng.normal(0, 0.2, (4, 156)), betas=rng.normal(size=16),
                 mocap_framerate=np.array(60.0))
    with caplog.at_level("WARNING", logger="hybrid_pose"):
        s = P.PoseStream(tmp_path, batch_size=4, repeat=False)
        assert sum(len(b.pose) for b in s) == 8
    assert s.skipped == Counter(amass_shape_file=2) and not caplog.records
    assert [p.name for p in s.files] == ["walk_poses.npz"] * 2


def test_plain_npz_and_bad_shapes(tmp_path):
    poses, betas = rand_mosh(5, 5)
    poses[2, 0] = np.inf
    np.savez(tmp_path / "plain.npz", poses=poses, betas=betas)
    ps = P.read_poses(tmp_path / "plain.npz")
    assert len(ps) == 4 and ps.skipped == Counter(nonfinite=1)
    with pytest.raises(ValueError, match=r"plain\.npz: 1 of 5 rows hold NaN"):
        P.read_poses(tmp_path / "plain.npz", on_error="raise")
    np.savez(tmp_path / "short.npz", poses=poses[:, :60], betas=betas)
    with pytest.raises(ValueError, match=r"short\.npz.*expected \(N, 72\)"):
        P.read_poses(tmp_path / "short.npz")
    np.savez(tmp_path / "obj.npz", poses=np.array([None, None], dtype=object), betas=betas[:2])
    with pytest.raises(ValueError, match=r"obj\.npz.*allow_pickle"):
        P.read_poses(tmp_path / "obj.npz")
    with pytest.raises(FileNotFoundError):
        P.read_poses(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="unknown pose file type"):
        P.read_poses(tmp_path / "poses.csv")


# --- streaming --------------------------------------------------------------------------------------------------
def make_tagged_files(root: Path, n_files=6, n=40):
    for i in range(n_files):
        p = np.zeros((n, 72), np.float32); p[:, 0], p[:, 1] = i, np.arange(n)
        if i % 2:   # mixed kinds: MoSh records and plain arrays
            mosh_file(root / f"neutrSMPL_x_{i:03d}.tfrecord", p, np.zeros((n, 10), np.float32))
        else:
            np.savez(root / f"part{i}.npz", poses=p, betas=np.zeros((n, 10), np.float32))


def test_stream_interleaves_files_and_is_reproducible(tmp_path):
    make_tagged_files(tmp_path)
    take = lambda seed, k: torch.cat([b.pose for b in P.PoseStream(tmp_path, batch_size=8, seed=seed, repeat=False, y_up=False)])[:k]
    first = take(0, 24)
    assert len(set(first[:, 0].int().tolist())) > 1, "the first samples should come from more than one file"
    assert torch.equal(take(0, 240), take(0, 240))
    assert not torch.equal(take(1, 240), take(0, 240))
    epoch = take(0, 10**6)
    assert sorted(map(tuple, epoch[:, :2].int().tolist())) == [(i, r) for i in range(6) for r in range(40)]


def test_stream_repeats_and_reshuffles(tmp_path):
    make_tagged_files(tmp_path, n_files=2, n=8)
    it = iter(P.PoseStream(tmp_path, batch_size=16, seed=0, y_up=False))
    e1, e2 = next(it).pose, next(it).pose
    assert sorted(e1[:, :2].tolist()) == sorted(e2[:, :2].tolist()) and not torch.equal(e1, e2)


def test_stream_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="pose sampler"):
        P.PoseStream(tmp_path / "no_such_folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        P.PoseStream(tmp_path / "empty")
    (tmp_path / "d").mkdir()
    make_tagged_files(tmp_path / "d", n_files=2, n=5)
    (tmp_path / "d" / "broken.npz").write_bytes(b"PK\x03\x04 truncated zip")
    s = P.PoseStream(tmp_path / "d", batch_size=4, repeat=False)
    assert sum(len(b.pose) for b in s) == 10 and s.skipped["unreadable_file"] == 1


# --- the critic's input layer on sampled poses -------------------------------------------------------------------
def test_critic_input_layer_matches_body():
    from hybrid_pose.body import load_body_model
    from hybrid_pose.critic import CriticInput, CriticInputLayer
    body = load_body_model("open", dtype=torch.float64)
    layer = CriticInputLayer(body)
    pose, betas = P.JointLimitSampler().sample(6, torch.Generator().manual_seed(2))
    pose, betas = pose.double(), betas.double()
    a, out = layer(pose, betas), body(pose, betas)
    torch.testing.assert_close(a.joints, out.lsp_joints, atol=1e-10, rtol=0)
    torch.testing.assert_close(a.rotmats, out.rotmats[:, 1:])
    torch.testing.assert_close(CriticInput.from_body(out, betas).joints, a.joints, atol=1e-10, rtol=0)


# --- which way is up, per file ------------------------------------------------------------------------------------
REAL_SHARD = Path(__file__).resolve().parents[1] / "data" / "mosh" / "neutrSMPL_jointLim_018.tfrecords"


def standing_roots(n, seed, z_up):
    from scipy.spatial.transform import Rotation
    rng = np.random.default_rng(seed)
    r = Rotation.from_rotvec(np.c_[np.zeros(n), rng.uniform(-np.pi, np.pi, n), np.zeros(n)]) * Rotation.from_rotvec(rng.normal(0, 0.15, (n, 3)))
    return ((Rotation.from_rotvec([np.pi / 2, 0, 0]) * r) if z_up else r).as_rotvec()


@pytest.mark.parametrize("z_up", [False, True])
def test_mosh_shards_are_read_upright_in_either_convention(tmp_path, z_up):
    poses, shapes = rand_mosh(30, 11)
    poses[:, :3] = standing_roots(30, 12, z_up)
    f = mosh_file(tmp_path / "neutrSMPL_x_000.tfrecord", poses, shapes)
    ps = P.read_poses(f)
    assert ps.frame == ("z_up" if z_up else "y_up") and "read as" in repr(ps)
    assert np.median(P.root_tilt_deg(ps.poses)) < 15
    np.testing.assert_array_equal(ps.poses[:, 3:], poses[:, 3:])
    other = P.read_poses(f, frame="y_up" if z_up else "z_up")          # the wrong reading lays them down
    assert np.median(P.root_tilt_deg(other.poses)) > 75
    with open(tmp_path / "seq.pkl", "wb") as fh: pickle.dump({"poses": poses.astype(np.float64), "betas": shapes[0]}, fh, protocol=2)
    assert P.read_poses(tmp_path / "seq.pkl").frame == ps.frame


def test_amass_stays_z_up(tmp_path):
    smplh = np.zeros((4, 156)); smplh[:, :3] = standing_roots(4, 3, z_up=False)   # upright as stored, but AMASS
    np.savez(tmp_path / "a_poses.npz", poses=smplh, betas=np.zeros(16), mocap_framerate=np.array(60.0))
    assert P.read_poses(tmp_path / "a_poses.npz").frame == "z_up"                 # the documented world is trusted
    assert P.read_poses(tmp_path / "a_poses.npz", frame="auto").frame == "y_up"   # unless asked to measure


@pytest.mark.skipif(not REAL_SHARD.is_file(), reason="HMR's real joint-limit MoSh shard is not in data/mosh/")
def test_real_hmr_shard_is_already_upright():
    ps = P.read_mosh_tfrecord(REAL_SHARD)
    assert len(ps) == 1968 and ps.frame == "y_up"
    assert ps.tilt_deg["y_up"] < 15 and ps.tilt_deg["z_up"] > 75
    assert np.median(P.root_tilt_deg(ps.poses)) < 15


# --- which joint limits ---------------------------------------------------------------------------------------------
def _rot(p):
    from smplx.lbs import batch_rodrigues
    return batch_rodrigues(torch.as_tensor(p, dtype=torch.float64).reshape(-1, 3)).reshape(-1, 24, 3, 3)


def test_limit_tables_default_and_calibrated():
    from hybrid_pose.body import SMPL_JOINT_NAMES
    assert set(P.JOINT_LIMIT_TABLES) >= {"authored", "calibrated"}
    i = SMPL_JOINT_NAMES.index("left_elbow")
    p = np.zeros((1, 72)); p[0, 3 * i + 2] = np.radians(60)           # the elbow swung 60° about z
    assert P.joint_limit_violation(_rot(p)).count.tolist() == [1]      # the default is unchanged: the authored table
    assert P.joint_limit_violation(_rot(p), table="calibrated").count.tolist() == [0]
    p[0, 3 * i + 2] = np.radians(140)                                  # beyond what real fits reach (123.6° + 1°)
    assert P.joint_limit_violation(_rot(p), table="calibrated").count.tolist() == [1]
    for n, (ax, lo, hi) in P.JOINT_LIMIT_TABLES["calibrated"].items():
        a = P.JOINT_LIMITS[n]
        assert ax == a[0] and (lo <= a[1]).all() and (hi >= a[2]).all(), n
    with pytest.raises(ValueError, match="table must be one of"):
        P.joint_limits(table="clinical")


@pytest.mark.skipif(not REAL_SHARD.is_file(), reason="HMR's real joint-limit MoSh shard is not in data/mosh/")
def test_calibrated_limits_hold_on_held_out_real_poses():
    R = _rot(P.read_mosh_tfrecord(REAL_SHARD).poses)
    half = len(R) // 2
    held = {t: P.joint_limit_violation(R[half:], table=t).summary()["poses_violating"] for t in ("authored", "calibrated")}
    assert held["authored"] > 0.9 and held["calibrated"] <= 0.01, held
    redo = P.calibrate_joint_limits(R[:half])                          # the committed numbers come from the first half
    for n, row in redo.items():
        np.testing.assert_allclose(np.array(row[1:]), np.array(P._LIMITS_CALIBRATED_LEFT[n][1:]), atol=0.051)
