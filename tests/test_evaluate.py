"""Evaluation (`hybrid_pose.evaluate`): the metric functions against slow, obvious references on fresh random inputs,
and `evaluate` over a small synthetic set: perfect predictions, pixel-exact labels, the paper numbers equal to the
losses' own functions, regrouping independent of the loader's batch size, max_batches, modes, flips, and errors."""
import csv, math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.spatial.transform import Rotation
from torch import nn

from hybrid_pose.body import example_poses, load_body_model
from hybrid_pose.data import PoseDataset, crop_labels, make_loader
from hybrid_pose.fixtures import write_fake_layout
from hybrid_pose.evaluate import (EvalResult, TruthModel, confusion_matrix, crop_on_photo, evaluate, paste_to_image, f1_scores, flip_joints3d,
                                  load_truth, metric_registry, mpjpe, pa_mpjpe, part_confusion, pixel_accuracy, procrustes_align,
                                  score_batch, silhouette_confusion, similarity_transform, theta_from_truth)
from hybrid_pose import losses
from hybrid_pose.losses import keypoint_reprojection_loss, mesh_reprojection_loss
from hybrid_pose.model import decode, mean_theta
from hybrid_pose.synthetic import generate_synthetic


# ---------------------------------------------------------------- fixtures and stand-in models

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("evaluate")
    generate_synthetic(r / "synthetic", n=8, seed=0, progress=False)
    return r


@pytest.fixture(scope="module")
def body():
    return load_body_model("open")


@pytest.fixture(scope="module")
def ds(root):
    return PoseDataset(root, "synthetic", split="all", augment=False)


def loader(ds, bs):
    return make_loader(ds, batch_size=bs, num_workers=0)


class NoisyTruth:
    "The truth's Θ plus noise fixed by the image number (so any batching gives the same predictions); two stages."
    def __init__(self, truth, scale=0.05):
        self.truth, self.scale = load_truth(truth), scale

    def predict_batch(self, batch):
        th = theta_from_truth(self.truth, batch["meta"])
        noise = torch.stack([torch.randn(85, generator=torch.Generator().manual_seed(int(n)))
                             for n in batch["meta"]["number"]]) * self.scale
        noise[:, 0] *= 0.2                                                  # the camera scale: ±1 %
        return [th + 3 * noise, th + noise]


class Const(nn.Module):
    "The same Θ (default Θ₀) for every image; records its mode and whether gradients were on."
    def __init__(self, theta=None):
        super().__init__()
        self.theta = nn.Parameter(mean_theta() if theta is None else theta)
        self.seen = []

    def forward(self, images):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return [self.theta.expand(images.shape[0], -1)]


def numeric_rows_close(a, b):
    assert [r["number"] for r in a] == [r["number"] for r in b]
    for ra, rb in zip(a, b):
        for k, v in ra.items():
            if isinstance(v, float):
                assert math.isclose(v, rb[k], rel_tol=1e-4, abs_tol=1e-5) or (math.isnan(v) and math.isnan(rb[k])), (k, v, rb[k])
            else:
                assert v == rb[k], (k, v, rb[k])


# ---------------------------------------------------------------- metric functions

def test_pa_mpjpe_is_the_least_squares_optimum():
    "Against a generic optimiser over (log s, rotation vector, t) started far away: never worse, and the same optimum."
    g = torch.Generator().manual_seed(11)
    X = torch.randn(4, 14, 3, generator=g, dtype=torch.float64) * 0.3
    R = torch.as_tensor(Rotation.random(4, random_state=5).as_matrix())
    Y = 1.3 * X @ R.transpose(1, 2) + 0.4 + torch.randn(4, 14, 3, generator=g, dtype=torch.float64) * 0.05
    Y[3] = X[3] * torch.tensor([1., -1, 1], dtype=torch.float64)             # a mirrored copy: reflection not allowed
    T = similarity_transform(X, Y)
    ours = (procrustes_align(X, Y) - Y).square().sum((1, 2))
    for b in range(4):
        x, y = X[b].numpy(), Y[b].numpy()
        f = lambda p: ((np.exp(p[0]) * x @ Rotation.from_rotvec(p[1:4]).as_matrix().T + p[4:] - y) ** 2).sum()
        best = min((minimize(f, np.r_[0, Rotation.random(random_state=k).as_rotvec(), 0, 0, 0], method="BFGS",
                             options=dict(gtol=1e-12)) for k in range(4)), key=lambda r: r.fun)
        assert ours[b] <= best.fun + 1e-9
        assert abs(ours[b] - best.fun) < 1e-6 * max(1, best.fun)
    assert torch.allclose(torch.linalg.det(T.rotation), torch.ones(4, dtype=torch.float64))
    # with a reflection allowed the mirrored copy would fit exactly; ours must not
    assert pa_mpjpe(X[3:], Y[3:]).item() > 0.05


def test_mpjpe_known_values():
    gt = torch.randn(2, 14, 3)
    assert torch.allclose(mpjpe(gt + torch.tensor([1., -2, 3]), gt), torch.zeros(2), atol=1e-6)  # a shift is no error
    p = gt.clone(); p[:, 0, 0] += 0.14                                      # one non-hip joint off by 14 cm
    assert torch.allclose(mpjpe(p, gt), torch.full((2,), 0.01), atol=1e-6)
    p = gt.clone(); p[:, 2, 0] += 0.2                                       # a hip moves the pelvis by half
    assert torch.allclose(mpjpe(p, gt), torch.full((2,), 0.1), atol=1e-6)   # every joint is then 10 cm off
    assert torch.allclose(mpjpe(p, gt, root=None), torch.full((2,), 0.2 / 14), atol=1e-6)


def test_confusions_match_numpy_counts():
    g = torch.Generator().manual_seed(4)
    pm, gm = torch.rand(3, 17, 13, generator=g) > 0.6, torch.rand(3, 17, 13, generator=g) > 0.5
    sc = silhouette_confusion(pm, gm)
    P, G = pm.numpy(), gm.numpy()
    for b in range(3):
        ref = [[(~P[b] & ~G[b]).sum(), (P[b] & ~G[b]).sum()], [(~P[b] & G[b]).sum(), (P[b] & G[b]).sum()]]
        assert sc[b].tolist() == ref
    tot = sc.sum(0).double()
    tp, fp, fn, tn = tot[1, 1], tot[0, 1], tot[1, 0], tot[0, 0]
    assert math.isclose(f1_scores(sc.sum(0))[1].item(), (2 * tp / (2 * tp + fp + fn)).item(), rel_tol=1e-12)
    assert math.isclose(f1_scores(sc.sum(0))[0].item(), (2 * tn / (2 * tn + fn + fp)).item(), rel_tol=1e-12)
    assert math.isclose(pixel_accuracy(sc.sum(0)).item(), (P == G).mean(), rel_tol=1e-12)
    parts_p = torch.randint(0, 7, (2, 5, 6), generator=g)
    with pytest.raises(ValueError, match="0..6"):
        part_confusion(parts_p + 1, parts_p)                                 # a predicted 7
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(parts_p, parts_p[:, :4], 7)


def test_paste_undoes_the_label_crop_on_random_photos():
    "Property sweep: with one photo pixel per crop pixel, pasting the loader's label crop back restores the photo's labels."
    rng = np.random.default_rng(11)
    for _ in range(40):
        S = int(rng.choice([8, 16, 24]))
        H, W = (int(v) for v in rng.integers(5, 60, size=2))
        cx, cy = (int(v) for v in rng.integers(-S // 2, [W + S // 2, H + S // 2]))   # the box may leave the photo
        flip = bool(rng.random() < 0.5)
        photo = rng.integers(0, 7, size=(H, W)).astype(np.uint8)
        crop = crop_labels(photo, (cx, cy), float(S), size=S, flip=flip, fill=0)
        back = paste_to_image(torch.from_numpy(crop), (cx, cy), S, flip, (H, W)).numpy()
        rows, cols = np.arange(H)[:, None], np.arange(W)[None, :]
        inside = (rows >= cy - S // 2) & (rows < cy + S // 2) & (cols >= cx - S // 2) & (cols < cx + S // 2)
        assert np.array_equal(back[inside], photo[inside]) and (back[~inside] == 0).all()
        on = crop_on_photo(torch.tensor([[cx, cy]]), torch.tensor([S]), torch.tensor([flip]), torch.tensor([[H, W]]), S)[0]
        assert int(on.sum()) == int(inside.sum())                             # the crop's pixels on the photo


# ---------------------------------------------------------------- evaluate on the synthetic set

def test_pixel_exact_with_the_label_crops_sampling(body, ds, root):
    "Θ from the truth at the label crop's nearest-pixel positions renders the generator's parts exactly (on the photo)."
    b = next(iter(loader(ds, 8)))
    tr = load_truth(root / "synthetic/truth.npz")
    xy0 = b["meta"]["center"].double() + 0.5 - 112
    snapped = dict(b["meta"], center=b["meta"]["center"].double() + torch.floor(xy0) + 0.5 - xy0)
    sc = score_batch(theta_from_truth(tr, snapped), b, body, {"synthetic": tr})
    pc = sc.arrays["part_conf_crop"][:, :7]                # the crop frame; its padding beyond the photo is ignored
    off = pc.sum((1, 2)) - torch.diagonal(pc, dim1=1, dim2=2).sum(1)
    assert off.max() <= 3, off                             # image 1's body beyond the photo's top border is not scored
    on = crop_on_photo(b["meta"]["center"], b["meta"]["box_size"], b["meta"]["flipped"], b["meta"]["image_size"])
    assert torch.equal(sc.arrays["part_conf_crop"][:, 7].sum(1), (~on).sum((1, 2)))  # the generator writes no 255


def test_paper_numbers_equal_the_losses_on_groups(body, ds, root):
    model = NoisyTruth(root / "synthetic/truth.npz")
    r = evaluate(model, body, loader(ds, 8), device="cpu", progress=False, paper_batch=4)
    b = next(iter(loader(ds, 8)))
    d = decode(model.predict_batch(b)[-1], body)
    kprs = [keypoint_reprojection_loss(d.keypoints[a:a + 4], b["keypoints"][a:a + 4]).item() for a in (0, 4)]
    mrs = [mesh_reprojection_loss(d.vertices_px[a:a + 4], b["mask"][a:a + 4], reduction="paper", pixel_centers=False).item()
           for a in (0, 4)]
    assert math.isclose(r.summary["KPR_paper"], sum(kprs) / 2, rel_tol=1e-5)
    assert math.isclose(r.summary["MR_paper"], sum(mrs) / 2, rel_tol=1e-5)
    assert r.summary["paper_groups"] == 2 and r.summary["KPR_paper"] > 0.5
    # a last, short group (8 = 3 + 3 + 2): KPR as is, MR's sum scaled to 3 images
    s3 = r.resummarize(3)
    kpr3 = [keypoint_reprojection_loss(d.keypoints[a:a + 3], b["keypoints"][a:a + 3]).item() for a in (0, 3, 6)]
    mr3 = [mesh_reprojection_loss(d.vertices_px[a:a + 3], b["mask"][a:a + 3], reduction="paper", pixel_centers=False).item()
           for a in (0, 3, 6)]
    assert s3["paper_groups"] == 3
    assert math.isclose(s3["KPR_paper"], sum(kpr3) / 3, rel_tol=1e-5)
    assert math.isclose(s3["MR_paper"], (mr3[0] + mr3[1] + mr3[2] * 3 / 2) / 3, rel_tol=1e-5)


def test_regrouping_is_independent_of_the_loaders_batch_size(body, ds, root):
    model = NoisyTruth(root / "synthetic/truth.npz")
    r3 = evaluate(model, body, loader(ds, 3), device="cpu", progress=False)
    r8 = evaluate(model, body, loader(ds, 8), device="cpu", progress=False)
    numeric_rows_close(r3.rows, r8.rows)
    assert r3.summary.keys() == r8.summary.keys()
    for k, v in r8.summary.items():
        assert math.isclose(r3.summary[k], v, rel_tol=1e-5, abs_tol=1e-7) or (math.isnan(v) and math.isnan(r3.summary[k])), k
    assert r3.summary["paper_groups"] == 1 and r3.summary["MR_paper"] > 0


def test_max_batches_and_stage(body, ds, root):
    model = NoisyTruth(root / "synthetic/truth.npz")
    r = evaluate(model, body, loader(ds, 2), device="cpu", progress=False, max_batches=2)
    assert len(r) == 4 and [x["number"] for x in r.rows] == [1, 2, 3, 4]
    r0 = evaluate(model, body, loader(ds, 2), device="cpu", progress=False, max_batches=2, stage=0)
    assert r0.summary["kpr"] > 2 * r.summary["kpr"]                          # stage 0 carries three times the noise
    with pytest.raises(ValueError, match="returned 2 stages"):
        evaluate(model, body, loader(ds, 2), device="cpu", progress=False, stage=2)


def test_mode_is_restored_and_no_gradients(body, ds):
    m = Const()
    evaluate(m, body, loader(ds, 4), device="cpu", progress=False)
    assert m.training and m.seen == [(False, False)] * 2                     # eval mode, no grad, then train again
    m.eval(); m.seen.clear()
    r = evaluate(m, body, loader(ds, 4), device="cpu", progress=False)
    assert not m.training and m.seen == [(False, False)] * 2
    assert not r.arrays["theta"].requires_grad


def test_flipped_crops_get_mirrored_truth(body, root):
    flipped = PoseDataset(root, "synthetic", split="all", augment=True, jitter=0, scale=(1, 1), flip=1.0)
    th = mean_theta(); th[6:75] = example_poses()["reaching"][3:]          # an asymmetric pose: mirroring matters
    m = Const(th)
    r = evaluate(m, body, make_loader(flipped, batch_size=8, shuffle=True, num_workers=0), device="cpu", progress=False)
    assert all(x["flipped"] for x in r.rows)
    rows = r.column("number") - 1                                           # shuffled: match by image number
    tr = load_truth(root / "synthetic/truth.npz")
    with torch.no_grad(): pj = decode(th[None], body).body.lsp_joints.double()
    gt = torch.as_tensor(tr["joints3d"], dtype=torch.float64)
    want = 1000 * mpjpe(pj.expand(8, -1, -1), flip_joints3d(gt))
    plain = 1000 * mpjpe(pj.expand(8, -1, -1), gt)
    assert np.allclose(r.column("mpjpe_mm"), want.numpy()[rows], rtol=1e-4)
    assert not np.allclose(r.column("mpjpe_mm"), plain.numpy()[rows], rtol=1e-2)
    with pytest.raises(ValueError, match="flipped"):
        evaluate(TruthModel(tr), body, loader(flipped, 8), device="cpu", progress=False)


def test_truth_found_skipped_or_missing(body, ds, tmp_path):
    m = Const()
    assert evaluate(m, body, loader(ds, 8), device="cpu", progress=False).summary["images_3d"] == 8
    r = evaluate(m, body, loader(ds, 8), device="cpu", progress=False, truth=False)
    assert r.summary["images_3d"] == 0 and math.isnan(r.summary["mpjpe_mm"]) and np.isnan(r.column("pa_mpjpe_mm")).all()
    write_fake_layout(tmp_path, lsp=(), lspet=(), synthetic=3)              # synthetic images, no truth.npz
    fake = PoseDataset(tmp_path, "synthetic", split="all", augment=False)
    with pytest.warns(RuntimeWarning, match="no 3D truth"):
        r = evaluate(m, body, loader(fake, 3), device="cpu", progress=False)
    assert r.summary["images_3d"] == 0 and r.summary["images"] == 3
    with pytest.raises(FileNotFoundError, match="hybrid_pose.synthetic"):
        evaluate(m, body, loader(fake, 3), device="cpu", progress=False, truth=tmp_path / "nope.npz")


def test_bad_inputs_give_clear_errors(body, ds):
    m, good = Const(), next(iter(loader(ds, 2)))
    run = lambda mm, ld, **kw: evaluate(mm, body, ld, device="cpu", progress=False, **kw)
    with pytest.raises(ValueError, match="paper_batch must be a positive int"):
        run(m, [good], paper_batch=0)
    with pytest.raises(ValueError, match="max_batches"):
        run(m, [good], max_batches=0)
    with pytest.raises(TypeError, match="expected a dict"):
        run(m, [[good["image"]]])
    with pytest.raises(ValueError, match=r"lacks \['mask'\]"):
        run(m, [{k: v for k, v in good.items() if k != "mask"}])
    with pytest.raises(ValueError, match=r"expected \(2,85\)"):
        run(lambda x: [torch.zeros(2, 80)], [good])
    with pytest.raises(TypeError, match="list of Θ"):
        run(lambda x: None, [good])
    with pytest.raises(TypeError, match="BodyModel"):
        evaluate(m, "open", [good], device="cpu", progress=False)
    with pytest.raises(ValueError, match="no usable batch"):
        run(m, [None, None])
    with pytest.raises(TypeError, match="predict_batch"):
        TruthModel({"joints3d": np.zeros((1, 14, 3))})(good["image"])
    r = run(m, [None, good])                                                 # a skipped batch is counted
    assert r.summary["skipped_batches"] == 1 and len(r) == 2
    from hybrid_pose.base import UsageError
    with pytest.raises(UsageError, match="'gpu' is not a device"):
        evaluate(m, body, [good], device="gpu", progress=False)
    if not torch.cuda.is_available():                                        # PyTorch's own message would be several lines
        with pytest.raises(UsageError, match="CUDA is not available"):
            evaluate(m, body, [good], device="cuda", progress=False)


def test_outputs(body, ds, tmp_path):
    r = evaluate(Const(), body, loader(ds, 8), device="cpu", progress=False)
    assert isinstance(r, EvalResult) and "KPR_paper" in repr(r)
    p = r.to_csv(tmp_path / "sub" / "rows.csv")
    with open(p) as f: lines = list(csv.DictReader(f))
    assert len(lines) == 8 and float(lines[5]["mpjpe_mm"]) == pytest.approx(r.rows[5]["mpjpe_mm"])
    md = r.to_markdown(["KPR_paper", "images"])
    assert md.splitlines()[2].startswith("| KPR_paper | ") and md.splitlines()[3] == "| images | 8 | images scored |"   # every key has its protocol (the registry)
    assert "image frame" in r.to_markdown(["fgbg_f1"]) and "crop frame" in r.to_markdown(["fgbg_f1_crop"])
    assert r.column("kpr").shape == (8,) and set(r.parts_f1_per_class) >= {"background", "head"}
    with pytest.raises(KeyError, match="no column"):
        r.column("nope")


@pytest.mark.cuda
def test_cuda_matches_cpu(body, ds, root):
    if not torch.cuda.is_available(): pytest.skip("no CUDA device")
    model = NoisyTruth(root / "synthetic/truth.npz")
    rc = evaluate(model, load_body_model("open"), loader(ds, 8), device="cuda", progress=False)
    r = evaluate(model, body, loader(ds, 8), device="cpu", progress=False)
    numeric_rows_close(rc.rows, r.rows)


# ---------------------------------------------------------------- the metric registry reproduces the numbers it replaced

SUMMARY_BEFORE_REGISTRY = {  # `evaluate` on the 8 synthetic people of `root`, NoisyTruth, loader batch 3, paper_batch 4,
    'images': 8,
    'paper_batch': 4,
    'paper_groups': 2,
    'KPR_paper': 2.8592262268066406,
    'KPR_paper_px': 5.337222290039063,
    'MR_paper': 11.571348190307617,
    'kpr': 2.7889938205480576,
    'kpr_px': 5.206121891736984,
    'kp_l2_px': 8.05183345079422,
    'pck@0.2': 0.6517857142857143,
    'pck_vis@0.2': 0.23076923076923078,
    'pck_crop@0.05': 0.8210526315789474,
    'pck_crop@0.1': 1.0,
    'mr_px': 2.2329209744930267,
    'mr_to_mask_px': 2.3702896162867546,
    'mr_to_mesh_px': 1.7113266214728355,
    'mr_paper_image': 2.8928370624780655,
    'images_mask': 8,
    'fgbg_acc': 0.9849466516887183,
    'fgbg_f1': 0.8505946250529933,
    'images_parts': 8,
    'parts_acc': 0.9806360979326519,
    'parts_f1': 0.5442954565882435,
    'images_mask_crop': 8,
    'fgbg_acc_crop': 0.9552325813137755,
    'fgbg_f1_crop': 0.8407891484483108,
    'images_parts_crop': 8,
    'parts_acc_crop': 0.9426045320471939,
    'parts_f1_crop': 0.5415369236297163,
    'images_3d': 8,
    'mpjpe_mm': 49.02479733263242,
    'pa_mpjpe_mm': 31.667020479743893,
    'violations': 0.125,
    'poses_violating': 0.125,
    'violation_deg': 0.13040880858898163,
    'swing_violations': 0.125,
    'swing_excess_deg': 0.13040880858898163,
    'twist_violations': 0.0,
    'twist_excess_deg': 0.0,
    'unseen_violations': 0.0,
    'unseen_excess_deg': 0.0,
    'natural_dist_deg': 7.552804529666901}                        # captured with the code before the metric registry (commit 37c05f3)


def test_registry_reproduces_the_summary_it_replaced(body, ds, root):
    "Same keys in the same order, same values (to float64 round-off), whatever the registry adds (the loss-term columns)."
    res = evaluate(NoisyTruth(root / "synthetic/truth.npz"), body, loader(ds, 3), device="cpu", progress=False, paper_batch=4)
    s = res.summary
    assert [k for k in s if k in SUMMARY_BEFORE_REGISTRY] == list(SUMMARY_BEFORE_REGISTRY)
    for k, v in SUMMARY_BEFORE_REGISTRY.items():
        assert type(s[k]) is type(v) and math.isclose(s[k], v, rel_tol=1e-9, abs_tol=1e-12), (k, s[k], v)
    reported = {m.term: k for k, m in metric_registry().items() if m.term}    # kpr -> kpr, mr -> mr_px, j3d -> j3d, ...
    for t in losses.TERMS:                                               # every registered loss term is scored per image
        assert t in reported and reported[t] in s and reported[t] in res.rows[0], t
    assert math.isclose(s["j3d"], 60 * s["mpjpe_mm"] / 1000, rel_tol=1e-5)   # the 3D term is w_3d x MPJPE (metres)


def test_batch_joints3d_come_from_the_batch(body, ds, root):
    "A batch carrying its own `joints3d` is scored against them; the truth file is only the fallback."
    b = next(iter(loader(ds, 4)))
    assert "joints3d" in b
    th = theta_from_truth(load_truth(root / "synthetic/truth.npz"), b["meta"])
    own = score_batch(th, b, body).rows                                      # no truth file given
    assert all(r["mpjpe_mm"] < 1e-2 for r in own)
    moved = dict(b, joints3d=b["joints3d"] + 0.1 * torch.arange(14.)[:, None])  # a different truth in the batch wins
    assert all(r["mpjpe_mm"] > 10 for r in score_batch(th, moved, body, {"synthetic": load_truth(root / "synthetic/truth.npz")}).rows)
    nob = {k: v for k, v in b.items() if k != "joints3d"}
    assert all(math.isnan(r["mpjpe_mm"]) for r in score_batch(th, nob, body).rows)
    assert all(r["mpjpe_mm"] < 1e-2 for r in score_batch(th, nob, body, {"synthetic": load_truth(root / "synthetic/truth.npz")}).rows)
