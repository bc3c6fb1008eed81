"""KPR and MR losses (`hybrid_pose.losses`): known values, the authors' reductions, and exact agreement of the fast
nearest-neighbour search with the brute force (values and gradients) on fresh random inputs."""
import math

import pytest
import torch

from hybrid_pose.render import silhouette
from hybrid_pose.losses import (MR_REDUCTIONS, keypoint_reprojection_loss, kpr_to_pixels, mask_boundary,
                                mesh_reprojection_bruteforce, mesh_reprojection_loss, mesh_reprojection_terms,
                                nearest_mask_pixel, nearest_vertex)

BACKENDS = ["scipy", "torch"]


# ---------------------------------------------------------------- helpers

def random_masks(B, H, W, g):
    "Blobs + speckle; image 0 touches the left and bottom borders; the last image is empty."
    yy, xx = torch.meshgrid(torch.arange(H) + .5, torch.arange(W) + .5, indexing="ij")
    m = torch.zeros(B, H, W, dtype=torch.bool)
    for b in range(B - 1):
        for _ in range(3):
            c = torch.rand(2, generator=g) * torch.tensor([W, H])
            r = torch.rand(2, generator=g) * torch.tensor([W, H]) / 3 + 1
            m[b] |= ((xx - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 < 1
        m[b] |= torch.rand(H, W, generator=g) < 0.01
    m[0, :, 0] = True
    m[0, -1, :] = True
    return m


def random_vertices(B, V, H, W, g, spread=1.6):
    "Points over the image and up to 30% of its size beyond every side."
    size = torch.tensor([W, H], dtype=torch.float64)
    return torch.rand(B, V, 2, generator=g, dtype=torch.float64) * size * spread - size * (spread - 1) / 2


def rasterize_silhouette(px, faces, size=224):
    "(B,V,2) crop pixels and (F,3) faces -> (B,size,size) bool silhouette, by `render.silhouette` (depth plays no part)."
    px = px.detach()
    return silhouette(torch.cat([px, torch.zeros_like(px[..., :1])], -1), faces, size)


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

def test_kpr_known_values():
    gt = torch.tensor([[[0., 0., 1.], [1., 1., 1.], [0., 0., 0.]]])
    pred = torch.tensor([[[3., -1.], [3., 3.], [5., 5.]]])
    assert keypoint_reprojection_loss(pred, gt).item() == 120.0            # 60 · (3+1+2+2)/4
    assert keypoint_reprojection_loss(pred, gt, weight=1.).item() == 2.0
    gt[0, 0, 2] = 0.5                                                        # TF: weighted sum / count of non-zero weights
    assert keypoint_reprojection_loss(pred, gt, weight=1.).item() == 1.5


def test_kpr_pools_over_the_batch():
    pred = torch.zeros(2, 3, 2); pred[0, 0] = 4.
    gt = torch.zeros(2, 3, 3); gt[0, 0, 2] = 1.; gt[1, :, 2] = 1.
    assert keypoint_reprojection_loss(pred, gt, weight=1.).item() == 1.0   # 8/(2·4), not the mean of 4 and 0


def test_kpr_nothing_visible_and_nan_coordinates():
    pred = torch.randn(3, 14, 2, requires_grad=True)
    gt = torch.cat([torch.full((3, 14, 2), float("nan")), torch.zeros(3, 14, 1)], -1)
    loss = keypoint_reprojection_loss(pred, gt)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(pred.grad, torch.zeros(3, 14, 2))
    gt[1, 5] = torch.tensor([0.2, -0.3, 1.])
    pred.grad = None
    loss = keypoint_reprojection_loss(pred, gt)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() == pred.grad[1, 5].abs().sum() > 0


def test_kpr_pixels():
    gt = torch.cat([torch.rand(8, 14, 2) * 2 - 1, torch.ones(8, 14, 1)], -1)
    k = keypoint_reprojection_loss(gt[..., :2] - 3 * 2 / 224, gt)           # 3 px off in every coordinate
    assert math.isclose(kpr_to_pixels(k).item(), 3.0, rel_tol=1e-5)
    assert math.isclose(kpr_to_pixels(3.20), 3.20 / 60 * 112)


def test_kpr_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B,K,3\)"):
        keypoint_reprojection_loss(torch.zeros(2, 14, 2), torch.zeros(2, 14, 2))
    with pytest.raises(TypeError):
        keypoint_reprojection_loss(torch.zeros(2, 14, 2).numpy(), torch.zeros(2, 14, 3))


# ---------------------------------------------------------------- MR: exactness

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_mr_equals_bruteforce_on_fresh_random_inputs(dtype, backend):
    seed = torch.seed() % 2 ** 31
    g = torch.Generator().manual_seed(seed)
    for B, H, W, V in [(4, 37, 45, 300), (3, 1, 50, 40), (3, 30, 1, 40), (2, 20, 20, 1)]:
        masks = random_masks(B, H, W, g)
        v = random_vertices(B, V, H, W, g)
        w = torch.rand(B, generator=g, dtype=torch.float64)
        for squared in (False, True):
            for centers in (True, False):
                assert_matches_bruteforce(v, masks, dtype, backend, squared, centers, w,
                                          f"seed {seed}, {(B, H, W, V)}, squared={squared}, pixel_centers={centers}")


@pytest.mark.parametrize("backend", BACKENDS)
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


def test_mask_boundary():
    m = torch.zeros(1, 6, 7, dtype=torch.bool)
    m[0, 1:5, 2:6] = True
    m[0, 3:6, 0] = True
    b = mask_boundary(m)[0]
    assert b[1:5, 2:6].sum() == 12 and not b[2:4, 3:5].any() and b[3:6, 0].all()
    assert mask_boundary(torch.ones(1, 3, 3, dtype=torch.bool)).sum() == 8


# ---------------------------------------------------------------- MR: values, reductions, edge cases

def test_mr_by_hand():
    m = torch.zeros(1, 8, 8, dtype=torch.bool); m[0, 0, 0] = True              # one pixel, centre (0.5, 0.5)
    v = torch.tensor([[[0.5, 3.5], [4.5, 0.5]]])
    t = mesh_reprojection_terms(v, m)
    assert (t.to_mask.item(), t.to_vertices.item(), t.mask_pixels.item(), t.num_vertices) == (7., 3., 1, 2)
    assert math.isclose(mesh_reprojection_loss(v, m).item(), 10 / 3, rel_tol=1e-6)
    assert math.isclose(mesh_reprojection_loss(v, m, reduction="paper").item(), 10 / 5, rel_tol=1e-6)
    assert mesh_reprojection_loss(v, m, reduction="sum", squared=True).item() == 34.
    d = mesh_reprojection_terms(torch.tensor([[[3.5, 4.5]]]), m)                # offset (3, 4): L2 5, L1 7
    assert (d.to_mask.item(), d.to_vertices.item()) == (5., 7.)
    c = mesh_reprojection_terms(v, m, pixel_centers=False)                     # the authors' corner convention
    assert c.to_vertices.item() == 4.
    assert math.isclose(c.to_mask.item(), math.hypot(0.5, 3.5) + math.hypot(4.5, 0.5), rel_tol=1e-6)


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
    with pytest.raises(ValueError, match="reduction must be one of"):
        mesh_reprojection_loss(v, masks, reduction="avg")


@pytest.mark.parametrize("reduction", MR_REDUCTIONS)
@pytest.mark.parametrize("squared", [False, True])
def test_mr_empty_masks_give_zero_and_zero_gradient(reduction, squared):
    v = (torch.rand(3, 50, 2) * 30).requires_grad_()
    masks = torch.zeros(3, 20, 20, dtype=torch.bool)
    masks[1, 5:9, 5:12] = True
    loss = mesh_reprojection_loss(v, masks, reduction=reduction, squared=squared)
    grad, = torch.autograd.grad(loss.sum(), v)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    assert torch.equal(grad[0], torch.zeros(50, 2)) and torch.equal(grad[2], torch.zeros(50, 2)) and grad[1].abs().sum() > 0
    empty = mesh_reprojection_loss(v, torch.zeros_like(masks), reduction=reduction, squared=squared)
    grad, = torch.autograd.grad(empty.sum(), v)
    assert (empty == 0).all() and torch.equal(grad, torch.zeros_like(v))


def test_mr_vertices_on_pixel_centres_have_finite_gradients():
    m = torch.zeros(1, 6, 6, dtype=torch.bool); m[0, 1:4, 1:4] = True
    v = torch.tensor([[[1.5, 1.5], [2.5, 3.5], [9.0, 9.0]]], requires_grad=True)
    grad, = torch.autograd.grad(mesh_reprojection_loss(v, m), v)
    assert torch.isfinite(grad).all()


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
    g = torch.Generator().manual_seed(1)
    B, H, W, V = 4, 64, 64, 2000
    masks, v = random_masks(B, H, W, g), random_vertices(B, V, H, W, g).float()
    vc = v.cuda().requires_grad_()
    vv = v.clone().requires_grad_()
    lc, l = mesh_reprojection_loss(vc, masks.cuda(), reduction="none"), mesh_reprojection_loss(vv, masks, reduction="none")
    torch.testing.assert_close(lc.cpu(), l, rtol=1e-5, atol=1e-6)
    assert torch.equal(nearest_vertex(vc, masks.cuda()).cpu(), nearest_vertex(v, masks))
    lc.sum().backward(); l.sum().backward()
    torch.testing.assert_close(vc.grad.cpu(), vv.grad, rtol=1e-5, atol=1e-6)
