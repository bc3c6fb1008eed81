"""The rasterizer from the outside, where a notebook can't hold it: random sweeps against a second, independently
written brute-force reference, batching and dtypes, the soft silhouette's gradient on the body model by finite
differences, every bad-input message, and CUDA. The worked checks (z order, borders, perspective, gradcheck, the
hard limit, shading, overlay, parts) live under the code in nbs/02_render."""
import math

import pytest
import torch

from hybrid_pose.render import (Fragments, interpolate, overlay, part_segmentation, rasterize, silhouette, soft_silhouette,
                                to_screen)



def brute_force(vs, faces, H, W):
    """Every pixel centre against every triangle in float64 (no boxes, no chunks, no packed keys).
    Returns the nearest face (-1 = none), its depth, and the pixels to skip: within 1e-4 px of some triangle's
    edge (an exact tie on a shared edge is decided by rounding) or with two depths within 1e-5."""
    vs = vs.double().cpu(); faces = faces.cpu()
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                            indexing="ij")
    fi, dep, tie = [], [], []
    for b in range(vs.shape[0]):
        best = torch.full((H, W), math.inf, dtype=torch.float64)
        idx = torch.full((H, W), -1)
        second = torch.full((H, W), math.inf, dtype=torch.float64)
        near_edge = torch.zeros(H, W, dtype=torch.bool)
        for f, (i, j, k) in enumerate(faces.tolist()):
            (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = vs[b, i].tolist(), vs[b, j].tolist(), vs[b, k].tolist()
            D = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
            if D == 0: continue
            w0 = ((x1 - xs) * (y2 - ys) - (y1 - ys) * (x2 - xs)) / D
            w1 = ((x2 - xs) * (y0 - ys) - (y2 - ys) * (x0 - xs)) / D
            w2 = ((x0 - xs) * (y1 - ys) - (y0 - ys) * (x1 - xs)) / D
            L = [math.hypot(x2 - x1, y2 - y1), math.hypot(x0 - x2, y0 - y2), math.hypot(x1 - x0, y1 - y0)]
            dist = torch.stack([w0 * abs(D) / L[0], w1 * abs(D) / L[1], w2 * abs(D) / L[2]])  # px to each edge line
            inside = (dist >= 0).all(0)
            near_edge |= (dist.abs() < 1e-4).any(0) & (dist > -1e-4).all(0)
            z = torch.where(inside, w0 * z0 + w1 * z1 + w2 * z2, math.inf)
            nearer = z < best
            second = torch.where(nearer, best, torch.minimum(second, z))
            idx = torch.where(nearer, f, idx); best = torch.where(nearer, z, best)
        fi.append(idx); dep.append(best); tie.append(near_edge | ((second - best).abs() < 1e-5))
    return torch.stack(fi), torch.stack(dep), torch.stack(tie)


def random_mesh(g, B=2, V=14, F=12, H=19, W=26, spill=0.3):
    "Random triangles (any winding, overlapping) that reach `spill` of the image size beyond each border."
    scale = torch.tensor([W * (1 + 2 * spill), H * (1 + 2 * spill), 2.0])
    vs = torch.rand(B, V, 3, generator=g) * scale - torch.tensor([W * spill, H * spill, 1.0])
    faces = torch.stack([torch.randperm(V, generator=g)[:3] for _ in range(F)])
    return vs, faces


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_brute_force_on_every_pixel(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    H, W = (19, 26) if seed % 2 else (31, 12)
    vs, faces = random_mesh(g, H=H, W=W)
    ref_f, ref_z, tie = brute_force(vs, faces, H, W)
    assert (~tie).float().mean() > 0.9
    for chunk in (1 << 21, 37):                                    # one chunk, and many small ones
        fr = rasterize(vs.to(dtype), faces, (H, W), chunk_size=chunk)
        assert isinstance(fr, Fragments) and fr.face_index.dtype == torch.long
        assert torch.equal(fr.face_index[~tie], ref_f[~tie])
        fg = ~tie & (ref_f >= 0)
        torch.testing.assert_close(fr.depth[fg].double(), ref_z[fg], rtol=0, atol=1e-4)
        assert torch.isinf(fr.depth[~tie & (ref_f < 0)]).all() and (fr.bary[ref_f < 0] == 0).all()
        assert torch.equal(silhouette(vs.to(dtype), faces, (H, W), chunk_size=chunk)[~tie], ref_f[~tie] >= 0)
    # barycentrics: non-negative, sum to one, and reproduce the pixel centre
    m = fr.mask
    assert (fr.bary[m] > -1e-4).all()
    torch.testing.assert_close(fr.bary[m].sum(-1), torch.ones_like(fr.bary[m][:, 0]))
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    p = interpolate(fr, faces, vs.to(dtype))[..., :2]
    centres = torch.stack([xs, ys], -1).expand_as(p).to(dtype)
    torch.testing.assert_close(p[m], centres[m], rtol=0, atol=1e-3 if dtype == torch.float32 else 1e-9)


def test_batch_items_are_independent_and_dtypes_agree():
    g = torch.Generator().manual_seed(7)
    vs, faces = random_mesh(g, B=4, H=24, W=24, spill=0.1)
    fr = rasterize(vs, faces, 24)
    for b in range(4):
        fb = rasterize(vs[b:b + 1], faces, 24)
        assert torch.equal(fb.face_index, fr.face_index[b:b + 1])
        torch.testing.assert_close(fb.bary, fr.bary[b:b + 1])
    s32, s64 = soft_silhouette(vs, faces, 24, sigma=1.0), soft_silhouette(vs.double(), faces, 24, sigma=1.0)
    assert s32.dtype == torch.float32 and s64.dtype == torch.float64
    torch.testing.assert_close(s32.double(), s64, rtol=0, atol=1e-4)
    torch.testing.assert_close(soft_silhouette(vs[2:3], faces, 24, sigma=1.0), s32[2:3])
    # chunking changes nothing, values or gradients
    a, b = vs.double().requires_grad_(), vs.double().requires_grad_()
    sa, sb = soft_silhouette(a, faces, 24, sigma=1.0), soft_silhouette(b, faces, 24, sigma=1.0, chunk_size=50)
    torch.testing.assert_close(sa, sb)
    sa.square().sum().backward(); sb.square().sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.fixture(scope="module")
def bodies():
    from hybrid_pose.body import example_poses, load_body_model
    body = load_body_model("open")
    poses = torch.stack([example_poses()[n] for n in ("walking", "reaching")])
    poses[:, 0] = math.pi
    out = body(poses, torch.zeros(2, 10))
    cam = torch.tensor([[0.9, 0.0, -0.05], [0.85, 0.05, 0.0]])
    return body, out.vertices, cam


def test_soft_silhouette_gradient_on_the_body_matches_finite_differences(bodies):
    body, verts, cam = bodies
    vs = to_screen(verts[:1].double(), cam[:1].double(), 64)
    g = torch.Generator().manual_seed(0)
    w = torch.rand(1, 64, 64, generator=g, dtype=torch.float64)
    d = torch.randn(vs.shape, generator=g, dtype=torch.float64) * torch.tensor([1., 1, 0])
    for sigma, cull in ((1.0, False), (0.5, True)):
        f = lambda x: (soft_silhouette(x, body.faces, 64, sigma=sigma, cull_backfaces=cull) * w).sum()
        x = vs.clone().requires_grad_()
        f(x).backward()
        eps = 1e-6
        fd = (f(vs + eps * d) - f(vs - eps * d)) / (2 * eps)
        torch.testing.assert_close((x.grad * d).sum(), fd, rtol=1e-4, atol=1e-6)


def test_wrong_shapes_raise_clear_errors():
    v, f = torch.rand(1, 5, 3) * 10, torch.tensor([[0, 1, 2]])
    cases = [
        (lambda: rasterize(v[0], f), "rasterize: `verts_screen` must have shape (B,V,3); got (5, 3)"),
        (lambda: rasterize(v[..., :2], f), "rasterize: `verts_screen` must have shape (B,V,3); got (1, 5, 2)"),
        (lambda: rasterize(v, f[0]), "rasterize: `faces` must have shape (F,3) (vertex indices); got (3,)"),
        (lambda: rasterize(v, f + 4), "must index the 5 vertices"),
        (lambda: rasterize(v, f, (4, 0)), "`image_size` must be positive"),
        (lambda: silhouette(v[0], f), "silhouette: `verts_screen` must have shape (B,V,3); got (5, 3)"),
        (lambda: soft_silhouette(v.view(5, 3), f), "soft_silhouette: `verts_screen` must have shape (B,V,3); got (5, 3)"),
        (lambda: soft_silhouette(v, f, sigma=0), "`sigma` must be > 0"),
        (lambda: part_segmentation(v, f, torch.zeros(4)), "`vertex_labels` must have shape (V,) or (B,V) with V=5; got (4,)"),
        (lambda: overlay(torch.rand(8, 8, 3), torch.rand(1, 9, 9, 4)), "`image` must have shape (B,H,W,3) or (H,W,3)"),
        (lambda: overlay(torch.rand(3, 9, 9, 3), torch.rand(2, 9, 9, 4)), "with B,H,W = (2, 9, 9); got (3, 9, 9, 3)"),
        (lambda: overlay(torch.rand(9, 9, 3), torch.rand(2, 9, 9, 3)), "`rendered` must have shape (B,H,W,4) (RGBA); got (2, 9, 9, 3)"),
        (lambda: to_screen(v[0], torch.tensor([[1., 0, 0]])), "to_screen: `vertices` must have shape (B,V,3); got (5, 3)"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError) as e:
            fn()
        assert msg in str(e.value), (msg, str(e.value))
    with pytest.raises(TypeError, match="integer"):
        rasterize(v, f.float())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_cpu(bodies):
    body, verts, cam = bodies
    vs = to_screen(verts, cam)
    fc, fr = rasterize(vs.cuda(), body.faces.cuda()), rasterize(vs, body.faces)
    assert (fc.face_index.cpu() == fr.face_index).float().mean() > 0.999
    assert torch.equal(silhouette(vs.cuda(), body.faces.cuda()).cpu(), fr.mask)
    a, b = vs.clone().requires_grad_(), vs.cuda().requires_grad_()
    sa, sb = soft_silhouette(a, body.faces), soft_silhouette(b, body.faces.cuda())
    torch.testing.assert_close(sb.cpu(), sa, rtol=0, atol=1e-4)
    sa.square().sum().backward(); sb.square().sum().backward()
    torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-3, atol=1e-3)
