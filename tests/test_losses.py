"""KPR and MR losses and the objective (`hybrid_pose.losses`) on fresh random inputs: per-image KPR against a loop,
exact agreement of every nearest-neighbour search with the brute force (values, gradients, indices) over random shapes,
ties and chunk sizes, the reductions, and `Objective` against the trainer's former hand-made combination. The small
hand-worked cases, the fixed-shape comparison with the brute force, the op count and the host syncs of the batched
search live in nbs/03_losses.ipynb."""
import math

import pytest
import torch

from hybrid_pose.fixtures import random_masks, rasterize_silhouette
from hybrid_pose import losses as losses_module
from hybrid_pose.losses import (MR_REDUCTIONS, OBJECTIVES, Objective, keypoint_reprojection_loss,
                                mesh_reprojection_bruteforce, mesh_reprojection_loss, mesh_reprojection_terms,
                                mr_per_image, nearest_mask_pixel, nearest_vertex)

BACKENDS = ["scipy", "batched", "torch"]


# ---------------------------------------------------------------- helpers

def random_vertices(B, V, H, W, g, spread=1.6):
    "Points over the image and up to 30% of its size beyond every side."
    size = torch.tensor([W, H], dtype=torch.float64)
    return torch.rand(B, V, 2, generator=g, dtype=torch.float64) * size * spread - size * (spread - 1) / 2


def assert_matches_bruteforce(v, masks, dtype, backend, squared, centers, w, what):
    "Fast terms on `v` cast to `dtype` vs the float64 brute force on the same (rounded) points."
    x0 = v.to(dtype)
    ref_v = x0.double().requires_grad_()
    ref = mesh_reprojection_bruteforce(ref_v, masks, squared, centers)
    ref_g, = torch.autograd.grad((ref * w).sum(), ref_v)
    x = x0.clone().requires_grad_()
    t = mesh_reprojection_terms(x, masks, squared, centers, backend)
    S = t.to_mask + t.to_vertices
    gx, = torch.autograd.grad((S * w.to(dtype)).sum(), x)
    torch.testing.assert_close(S.double(), ref, rtol=1e-5, atol=1e-8, msg=lambda m: f"values, {what}: {m}")
    torch.testing.assert_close(gx.double(), ref_g, rtol=1e-5, atol=1e-5 * ref_g.abs().max().item(),
                               msg=lambda m: f"gradients, {what}: {m}")


# ---------------------------------------------------------------- KPR

def test_kpr_per_image_matches_a_loop_on_fresh_random_inputs():
    "reduction='none' is the batch loss of each image alone (values and gradients); fractional and absent visibility too."
    g = torch.Generator().manual_seed(torch.seed() % 2 ** 31)
    for B, K in [(6, 14), (1, 14), (5, 3)]:
        pred = torch.randn(B, K, 2, generator=g, dtype=torch.float64, requires_grad=True)
        vis = torch.rand(B, K, 1, generator=g, dtype=torch.float64)
        vis = torch.where(vis < 0.3, 0, torch.where(vis < 0.6, vis, 1))            # 0, fractional or 1
        gt = torch.cat([torch.randn(B, K, 2, generator=g, dtype=torch.float64), vis], -1)
        gt[0, :, 2] = 0                                                             # an image without a visible joint
        w = torch.rand(B, generator=g, dtype=torch.float64)
        per = keypoint_reprojection_loss(pred, gt, 60., reduction="none")
        gp, = torch.autograd.grad((per * w).sum(), pred)
        ref = torch.stack([keypoint_reprojection_loss(pred[b:b + 1], gt[b:b + 1], 60.) for b in range(B)])
        gr, = torch.autograd.grad((ref * w).sum(), pred)
        torch.testing.assert_close(per, ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(gp, gr, rtol=1e-12, atol=0)
        assert per[0] == 0 and torch.equal(gp[0], torch.zeros(K, 2))
        gt[..., 2] = (gt[..., 2] > 0).double(); gt[:, 0, 2] = 1; gt[:, 1:, 2] = 0       # equal visible counts: the mean
        torch.testing.assert_close(keypoint_reprojection_loss(pred, gt), keypoint_reprojection_loss(pred, gt, reduction="none").mean())


# ---------------------------------------------------------------- MR: exactness

def random_case(g, B=None):
    "A batch of random shape: blobs with speckle, an empty image, masks of one pixel and vertices on the half-pixel grid."
    B = B or int(torch.randint(1, 7, (), generator=g))
    H, W, V = (int(torch.randint(1, n, (), generator=g)) for n in (30, 30, 150))
    masks = random_masks(B, H, W, g)
    for b in range(B):
        if torch.rand((), generator=g) < 0.2:                          # a mask of one pixel
            masks[b] = False; masks[b, torch.randint(H, (), generator=g), torch.randint(W, (), generator=g)] = True
    v = random_vertices(B, V, H, W, g)
    snap = torch.rand(B, V, 1, generator=g) < 0.5                       # on pixel centres, corners and edge midpoints
    return masks, torch.where(snap, (v * 2).round() / 2, v)


@pytest.mark.parametrize("chunk", [None, 7, 256], ids=["default", "tiny", "small"])
def test_batched_search_is_the_float64_bruteforce_over_random_shapes(monkeypatch, chunk):
    "Indices of the batched search, any shape, ties on purpose, any chunk size (also below one image's row of points)."
    if chunk: monkeypatch.setitem(losses_module._SCREEN_CHUNK, "cpu", chunk)
    seed = torch.seed() % 2 ** 31
    g = torch.Generator().manual_seed(seed)
    for trial in range({None: 30, 256: 10, 7: 4}[chunk]):             # tiny chunks: thousands of chunks, fewer trials
        masks, v = random_case(g)
        for dtype in (torch.float32, torch.float64):
            for centers in (True, False):
                o = 0.5 if centers else 0.0
                x = v.to(dtype)
                i = nearest_mask_pixel(x, masks, centers, backend="batched")
                nv = nearest_vertex(x, masks, centers, backend="batched")
                W = masks.shape[2]
                for b in range(len(masks)):
                    what = f"seed {seed}, trial {trial}, image {b}, {dtype}, pixel_centers={centers}"
                    rc = masks[b].nonzero()
                    if len(rc) == 0:
                        assert (i[b] == -1).all() and (nv[b] == -1).all(), what; continue
                    diff = (rc.flip(-1).double() + o)[:, None] - x[b].double()[None]
                    D = (diff * diff).sum(-1)                           # (N,V) the float64 brute force
                    assert torch.equal(nv[b][masks[b]], D.argmin(1)), what
                    d_min = D.min(0).values
                    got = torch.stack([i[b] % W, i[b] // W], -1).double() + o
                    assert torch.equal(((got - x[b].double()) ** 2).sum(-1), d_min), what
                    unique = (D == d_min).sum(0) == 1                   # ties aside, the same pixel
                    assert torch.equal(i[b][unique], (rc[:, 0] * W + rc[:, 1])[D.argmin(0)][unique]), what


def test_batched_loss_and_gradients_equal_the_per_image_search():
    "The batched search in place of the per-image one changes no bit of the loss or its gradient (generic points)."
    seed = torch.seed() % 2 ** 31
    g = torch.Generator().manual_seed(seed)
    for B in (1, 5):
        masks = random_masks(B, 33, 41, g)
        v = random_vertices(B, 250, 33, 41, g).float()
        for squared in (False, True):
            out = {}
            for backend in ("torch", "batched"):
                x = v.clone().requires_grad_()
                loss = mesh_reprojection_loss(x, masks, "none", squared, backend=backend)
                out[backend] = (loss, *torch.autograd.grad(loss.sum(), x))
            assert all(torch.equal(a, b) for a, b in zip(out["torch"], out["batched"])), f"seed {seed}, B={B}"


@pytest.mark.parametrize("backend", ["scipy", "batched"])   # "torch": bit for bit "batched", tested above
def test_mr_equals_bruteforce_on_person_masks(backend):
    "Open body model, 112-px person silhouettes, predictions in other poses and shifted (some vertices off the image)."
    from hybrid_pose.body import load_body_model
    from hybrid_pose.camera import crop_to_pixels, project
    body = load_body_model("open")
    seed = torch.seed() % 2 ** 31
    g = torch.Generator().manual_seed(seed)
    B, size = 3, 112
    pose = 0.4 * torch.randn(B, 72, generator=g); pose[:, :3] = torch.tensor([math.pi, 0., 0.])
    betas = torch.randn(B, 10, generator=g)
    cam = torch.tensor([[0.9, 0., 0.]]) + 0.05 * torch.randn(B, 3, generator=g)
    with torch.no_grad():
        masks = rasterize_silhouette(crop_to_pixels(project(body(pose, betas).vertices, cam), size), body.faces, size)
        pose2 = pose + 0.3 * torch.randn(B, 72, generator=g)
        cam2 = cam + torch.tensor([[0.15, 0.7, 0.]])                    # bigger and shifted right: off the image
        v = crop_to_pixels(project(body(pose2, torch.zeros(B, 10)).vertices, cam2), size)[:, ::5].double()
    assert masks.sum((1, 2)).min() > 300 and (v[..., 0] > size).any()
    w = torch.rand(B, generator=g, dtype=torch.float64)
    for squared in (False, True):
        assert_matches_bruteforce(v, masks, torch.float32, backend, squared, True, w, f"seed {seed}, squared={squared}")


def test_nearest_indices_match_bruteforce():
    g = torch.Generator().manual_seed(torch.seed() % 2 ** 31)
    B, H, W, V = 3, 30, 40, 200
    masks, v = random_masks(B, H, W, g), random_vertices(B, V, H, W, g)
    for backend in BACKENDS:
        i = nearest_mask_pixel(v, masks, backend=backend)
        nv = nearest_vertex(v, masks, backend=backend)
        assert (i[-1] == -1).all() and (nv[-1] == -1).all()
        for b in range(B - 1):
            rc = masks[b].nonzero()
            pts = rc.flip(-1).double() + 0.5
            d = torch.cdist(v[b], pts)
            assert torch.equal(i[b], (rc[:, 0] * W + rc[:, 1])[d.argmin(1)])
            assert torch.equal(nv[b][masks[b]], d.argmin(0))
            assert torch.equal(nv[b] >= 0, masks[b])


# ---------------------------------------------------------------- MR: values, reductions, edge cases

def test_mr_reductions_are_consistent():
    g = torch.Generator().manual_seed(0)
    B, H, W, V = 4, 40, 40, 100
    masks, v = random_masks(B, H, W, g), random_vertices(B, V, H, W, g).float()
    t = mesh_reprojection_terms(v, masks)
    S = t.to_mask + t.to_vertices
    per = S / (t.mask_pixels + V)
    torch.testing.assert_close(mesh_reprojection_loss(v, masks, reduction="none"), per)
    torch.testing.assert_close(mesh_reprojection_loss(v, masks), per[:-1].mean())      # the empty image is left out
    torch.testing.assert_close(mesh_reprojection_loss(v, masks, reduction="paper"), S.sum() / (V + 3))
    torch.testing.assert_close(mesh_reprojection_loss(v, masks, reduction="sum", weight=0.001), 0.001 * S.sum())
    torch.testing.assert_close(mr_per_image(t, "mean")[:-1].mean(), mesh_reprojection_loss(v, masks))
    for red in ("paper", "sum"):
        torch.testing.assert_close(mr_per_image(t, red).sum(), mesh_reprojection_loss(v, masks, reduction=red))
    with pytest.raises(ValueError, match="reduction must be one of"):
        mesh_reprojection_loss(v, masks, reduction="avg")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduction", [*MR_REDUCTIONS, "none"])
@pytest.mark.parametrize("squared", [False, True])
def test_mr_empty_masks_give_zero_and_zero_gradient(reduction, squared, backend):
    v = (torch.rand(3, 50, 2) * 30).requires_grad_()
    masks = torch.zeros(3, 20, 20, dtype=torch.bool)
    masks[1, 5:9, 5:12] = True
    loss = mesh_reprojection_loss(v, masks, reduction=reduction, squared=squared, backend=backend)
    grad, = torch.autograd.grad(loss.sum(), v)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert torch.equal(grad[0], torch.zeros(50, 2)) and torch.equal(grad[2], torch.zeros(50, 2)) and grad[1].abs().sum() > 0
    empty = mesh_reprojection_loss(v, torch.zeros_like(masks), reduction=reduction, squared=squared, backend=backend)
    grad, = torch.autograd.grad(empty.sum(), v)
    assert (empty == 0).all() and torch.equal(grad, torch.zeros_like(v))


def test_mr_non_finite_vertices_do_not_crash():
    m = torch.zeros(2, 10, 10, dtype=torch.bool); m[:, 2:6, 2:6] = True
    v = torch.rand(2, 20, 2) * 10
    v[0, 3] = float("nan"); v[0, 4, 0] = float("inf")
    for backend in BACKENDS:
        out = mesh_reprojection_loss(v, m, reduction="none", backend=backend)
        assert not torch.isfinite(out[0]) and torch.isfinite(out[1])
    far = torch.rand(2, 20, 2, dtype=torch.float64) * 10
    far[0, 0] = torch.tensor([1e300, 3.]); far[1, 0] = torch.tensor([-1e20, 1e15])
    for backend in BACKENDS:
        out = mesh_reprojection_loss(far, m, reduction="none", backend=backend)
        assert (out > 1e10).all() and not out.isnan().any()           # huge (1e300² overflows to inf), never NaN


def test_mr_mask_dtypes_and_bad_inputs():
    v = torch.rand(2, 20, 2) * 10
    m = torch.zeros(2, 10, 10); m[:, 2:6, 2:6] = 0.7                          # numbers: > 0 is the mask
    ref = mesh_reprojection_loss(v, m > 0)
    assert mesh_reprojection_loss(v, m) == ref == mesh_reprojection_loss(v, (m > 0).to(torch.uint8))
    with pytest.raises(ValueError, match="with B = 2"):
        mesh_reprojection_loss(v, m[:1])
    with pytest.raises(ValueError, match=r"\(B,V,2\)"):
        mesh_reprojection_loss(v[..., :1], m)
    with pytest.raises(ValueError, match=r"\(B,V,2\)"):
        mesh_reprojection_loss(v.long(), m)
    with pytest.raises(TypeError):
        mesh_reprojection_loss(v.numpy(), m)
    with pytest.raises(ValueError, match="backend must be"):
        mesh_reprojection_loss(v, m, backend="kdtree")
    with pytest.raises(ValueError, match="no images or no vertices"):
        mesh_reprojection_loss(v[:0], m[:0])


def test_mr_gradient_flows_to_body_parameters():
    "Through the camera and the body model, as in training."
    from hybrid_pose.body import load_body_model
    from hybrid_pose.camera import crop_to_pixels, project
    body = load_body_model("open")
    pose = torch.zeros(1, 72); pose[0, 0] = math.pi
    pose.requires_grad_()
    betas = torch.zeros(1, 10, requires_grad=True)
    cam = torch.tensor([[0.9, 0.05, 0.]], requires_grad=True)
    m = torch.zeros(1, 224, 224, dtype=torch.bool); m[0, 40:200, 90:130] = True
    loss = mesh_reprojection_loss(crop_to_pixels(project(body(pose, betas).vertices, cam)), m)
    loss.backward()
    for p in (pose, betas, cam):
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mr_cuda_matches_cpu():
    "CUDA's default (the batched search) finds the CPU k-d trees' neighbours; loss and gradients agree; at most 2 syncs."
    import warnings
    g = torch.Generator().manual_seed(1)
    B, H, W, V = 4, 64, 64, 2000
    masks, v = random_masks(B, H, W, g), random_vertices(B, V, H, W, g).float()
    vc = v.cuda().requires_grad_()
    vv = v.clone().requires_grad_()
    lc, l = mesh_reprojection_loss(vc, masks.cuda(), reduction="none"), mesh_reprojection_loss(vv, masks, reduction="none")
    torch.testing.assert_close(lc.cpu(), l, rtol=1e-5, atol=1e-6)
    for backend in ("batched", "torch"):
        assert torch.equal(nearest_vertex(vc, masks.cuda(), backend=backend).cpu(), nearest_vertex(v, masks)), backend
        assert torch.equal(nearest_mask_pixel(vc, masks.cuda(), backend=backend).cpu(), nearest_mask_pixel(v, masks)), backend
    lc.sum().backward(); l.sum().backward()
    torch.testing.assert_close(vc.grad.cpu(), vv.grad, rtol=1e-5, atol=1e-6)
    mc = masks.cuda()
    mesh_reprojection_loss(vc, mc).backward(); torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mesh_reprojection_loss(vc, mc).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= 2, syncs


# ---------------------------------------------------------------- the objective

def objective_inputs(g, B=4, dtype=torch.float32):
    kp = torch.randn(B, 14, 2, generator=g, dtype=dtype)
    gt = torch.cat([torch.randn(B, 14, 2, generator=g, dtype=dtype), (torch.rand(B, 14, 1, generator=g) < 0.8).to(dtype)], -1)
    masks = random_masks(B, 30, 40, g)
    px = random_vertices(B, 150, 30, 40, g).to(dtype)
    return kp, px, gt, masks


OPTIONS = [("mean", False, 1.0), ("paper", False, 0.001), ("sum", True, 0.5), ("mean", True, 2.0)]


@pytest.mark.parametrize("losses", [k for k in OBJECTIVES if "j3d" not in OBJECTIVES[k]])   # the reprojection objectives
def test_objective_equals_the_old_combination_bit_for_bit(losses):
    "Values and gradients of `total` equal `kpr·[kpr in losses] + mr·[mr in losses]`, the trainer's former formula."
    g = torch.Generator().manual_seed(torch.seed() % 2 ** 31)
    kp, px, gt, masks = objective_inputs(g)
    for red, sq, w in OPTIONS:
        o = Objective(losses, kpr_weight=60., mr_weight=w, mr_reduction=red, mr_squared=sq)
        k1, v1 = kp.clone().requires_grad_(), px.clone().requires_grad_()
        old = (keypoint_reprojection_loss(k1, gt, 60.) * (losses in ("kpr", "both"))
               + mesh_reprojection_loss(v1, masks, red, sq, w) * (losses in ("mr", "both")))
        old.backward()
        k2, v2 = kp.clone().requires_grad_(), px.clone().requires_grad_()
        new = o.total(o.terms(k2, v2, gt, masks, log_all=True))
        new.backward()
        assert torch.equal(new, old), (red, sq, w)
        assert torch.equal(k2.grad if k2.grad is not None else torch.zeros_like(kp), k1.grad)
        assert torch.equal(v2.grad if v2.grad is not None else torch.zeros_like(px), v1.grad)
        assert (k2.grad is None) == (losses == "mr") and (v2.grad is None) == (losses == "kpr")


@pytest.mark.parametrize("red,sq,w", OPTIONS)
def test_objective_per_image_terms_reduce_to_the_batch_terms(red, sq, w):
    g = torch.Generator().manual_seed(torch.seed() % 2 ** 31)
    kp, px, gt, masks = objective_inputs(g, dtype=torch.float64)
    gt[..., 2] = 1                                                                  # equal visible counts
    o = Objective(mr_weight=w, mr_reduction=red, mr_squared=sq)
    batch, per = o.terms(kp, px, gt, masks), o.terms(kp, px, gt, masks, reduction="none")
    assert per["kpr"].shape == per["mr"].shape == (4,)
    torch.testing.assert_close(per["kpr"].mean(), batch["kpr"])
    has = masks.flatten(1).any(1)
    torch.testing.assert_close(per["mr"][has].mean() if red == "mean" else per["mr"].sum(), batch["mr"])
    assert per["mr"][~has].eq(0).all()


def test_objective_computes_mr_only_when_needed(monkeypatch):
    "A KPR-only objective runs no nearest-neighbour search unless MR is asked for the logs, and then without autograd."
    g = torch.Generator().manual_seed(0)
    kp, px, gt, masks = objective_inputs(g)
    calls = []
    real = losses_module.mesh_reprojection_terms
    def spy(*a, **k):
        calls.append(torch.is_grad_enabled()); return real(*a, **k)
    monkeypatch.setattr(losses_module, "mesh_reprojection_terms", spy)
    o = Objective(losses="kpr")
    assert list(o.terms(kp, px.requires_grad_(), gt, masks)) == ["kpr"] and calls == []
    t = o.terms(kp, px, gt, masks, log_all=True)
    assert calls == [False] and not t["mr"].requires_grad
    Objective(losses="both").terms(kp, px, gt, masks)
    assert calls == [False, True]
