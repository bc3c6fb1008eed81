"""The rasterizer from the outside: a brute-force reference on random meshes, borders, z order, the soft silhouette's
gradient and its hard limit on the body model, batching, dtypes, devices and bad input."""
import math

import pytest
import torch

from hybrid_pose.render import (Fragments, body_part_labels, interpolate, overlay, part_segmentation, rasterize,
                                render_mesh, shade, silhouette, soft_silhouette, to_screen, to_screen_perspective)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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


def test_faces_partly_outside_and_mesh_larger_than_image():
    # one triangle with two corners far outside: only the visible part is drawn, at the right pixels
    tri = torch.tensor([[[-50., -50., 1.], [4.5, 3.5, 1.], [-50., 60., 1.]]])
    fr = rasterize(tri, torch.tensor([[0, 1, 2]]), (8, 10))
    ref_f, _, tie = brute_force(tri, torch.tensor([[0, 1, 2]]), 8, 10)
    assert torch.equal(fr.face_index[~tie], ref_f[~tie]) and fr.mask.any() and not fr.mask.all()
    # a mesh much larger than the image covers every pixel; so does its soft silhouette (with no gradient inside)
    big = torch.tensor([[[-1e5, -1e5, 2.], [3e5, -1e5, 2.], [-1e5, 3e5, 2.]]], requires_grad=True)
    assert rasterize(big, torch.tensor([[0, 1, 2]]), 64).mask.all()
    s = soft_silhouette(big, torch.tensor([[0, 1, 2]]), 64)
    assert (s == 1).all()
    s.sum().backward()
    assert (big.grad == 0).all()
    # entirely outside, degenerate and non-finite triangles draw nothing
    junk = torch.tensor([[[-9., -9, 0], [-5, -9, 0], [-9, -5, 0], [1, 1, 0], [5, 5, 0], [9, 9, 0], [math.nan, 1, 0]]])
    fj = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 4, 3]])
    assert not rasterize(junk, fj, 16).mask.any() and not silhouette(junk, fj, 16).any()
    assert (soft_silhouette(junk[:, :6], fj[:2], 16) < 0.01).all()


def test_nearer_triangle_wins_whatever_the_order():
    sq = torch.tensor([[0., 0], [12, 0], [0, 12], [12, 12]])
    for far_first in (True, False):
        z = [3.0, -1.0] if far_first else [-1.0, 3.0]
        v = torch.cat([torch.cat([sq, torch.full((4, 1), z[0])], 1), torch.cat([sq, torch.full((4, 1), z[1])], 1)])[None]
        f = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 5, 6], [5, 7, 6]])
        fr = rasterize(v, f, 12)
        near = {0, 1} if not far_first else {2, 3}
        assert set(fr.face_index.unique().tolist()) == near
        torch.testing.assert_close(fr.depth, torch.full_like(fr.depth, -1.0))
    # interpenetrating planes: each pixel gets the nearer one
    a = torch.tensor([[0., 0, 0], [20, 0, 2], [0, 20, 0], [20, 20, 2]])       # z = x/10
    b = torch.tensor([[0., 0, 1], [20, 0, 1], [0, 20, 1], [20, 20, 1]])       # z = 1
    fr = rasterize(torch.cat([a, b])[None], torch.tensor([[0, 1, 2], [1, 3, 2], [4, 5, 6], [5, 7, 6]]), 20)
    x = torch.arange(20) + 0.5
    assert (fr.face_index[0][:, x < 9.9] <= 1).all() and (fr.face_index[0][:, x > 10.1] >= 2).all()


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


def test_perspective_correct_depth_is_exact_on_a_plane():
    X = torch.tensor([[-2., -2, 0], [2, -2, 0], [-2, 2, 0], [2, 2, 0]], dtype=torch.float64)
    X[:, 2] = 4 + 0.5 * X[:, 0]                                            # a tilted plane
    vs = to_screen_perspective(X[None], torch.zeros(1, 3, dtype=torch.float64), focal=100., size=64)
    fr = rasterize(vs, torch.tensor([[0, 1, 2], [1, 3, 2]]), 64, perspective_correct=True)
    u = torch.arange(64, dtype=torch.float64) + 0.5 - 32
    exact = (4 / (1 - 0.5 * u / 100)).expand(64, 64)
    torch.testing.assert_close(fr.depth[0][fr.mask[0]], exact[fr.mask[0]])
    # the perspective-correct barycentrics interpolate the 3D point on the ray
    P = interpolate(fr, torch.tensor([[0, 1, 2], [1, 3, 2]]), X[None])
    torch.testing.assert_close(P[0, :, :, 0][fr.mask[0]], (P[0, :, :, 2] * u / 100)[fr.mask[0]])


def test_soft_silhouette_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    faces = torch.tensor([[0, 1, 2], [2, 3, 4], [0, 3, 1], [5, 4, 1]])
    for trial in range(2):
        v = torch.rand(2, 6, 3, generator=g, dtype=torch.float64) * torch.tensor([15., 13, 1]) + 1
        v.requires_grad_()
        for sigma in (0.6, 2.0):
            for cull in (False, True):
                assert torch.autograd.gradcheck(
                    lambda x: soft_silhouette(x, faces, (13, 15), sigma=sigma, cull_backfaces=cull), (v,),
                    eps=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def bodies():
    from hybrid_pose.body import example_poses, load_body_model
    body = load_body_model("open")
    poses = torch.stack([example_poses()[n] for n in ("walking", "reaching")])
    poses[:, 0] = math.pi
    out = body(poses, torch.zeros(2, 10))
    cam = torch.tensor([[0.9, 0.0, -0.05], [0.85, 0.05, 0.0]])
    return body, out.vertices, cam


def test_soft_silhouette_tends_to_the_hard_one_on_the_body(bodies):
    body, verts, cam = bodies
    vs = to_screen(verts, cam)
    hard = silhouette(vs, body.faces)
    assert torch.equal(hard, rasterize(vs, body.faces).mask)
    for cull in (False, True):
        soft = soft_silhouette(vs, body.faces, sigma=0.03, cull_backfaces=cull) > 0.5
        iou = (soft & hard).sum() / (soft | hard).sum()
        assert iou > 0.99, (cull, iou)


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


def test_shading_overlay_and_parts(bodies):
    body, verts, cam = bodies
    rgba = render_mesh(verts, body.faces, cam)
    assert rgba.shape == (2, 224, 224, 4) and 0 <= rgba.min() and rgba.max() <= 1
    vs = to_screen(verts, cam)
    fr = rasterize(vs, body.faces)
    assert torch.equal(rgba[..., 3] > 0, fr.mask)
    per_face = shade(fr, verts, body.faces, colors=torch.rand(len(body.faces), 3), smooth=False)
    assert torch.equal(per_face[..., 3], rgba[..., 3])
    photo = torch.rand(224, 224, 3)
    out = overlay(photo, rgba, alpha=0.5)
    assert out.shape == (2, 224, 224, 3)
    torch.testing.assert_close(out[~fr.mask], photo.expand(2, -1, -1, -1)[~fr.mask])
    photo8 = (photo * 255).round().to(torch.uint8)
    torch.testing.assert_close(overlay(photo8, rgba, 0.5), overlay(photo8.float() / 255, rgba, 0.5))
    labels = body_part_labels(body)
    seg = part_segmentation(vs, body.faces, labels)
    assert seg.dtype == torch.long and set(seg.unique().tolist()) == set(range(7))
    assert torch.equal(seg > 0, fr.mask)
    persp = render_mesh(verts, body.faces, cam, perspective=True)
    iou = ((persp[..., 3] > 0) & fr.mask).sum() / ((persp[..., 3] > 0) | fr.mask).sum()
    assert iou > 0.95


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


def test_empty_inputs():
    v = torch.rand(2, 4, 3) * 8
    fr = rasterize(v, torch.zeros(0, 3, dtype=torch.long), 8)
    assert (fr.face_index == -1).all() and torch.isinf(fr.depth).all()
    assert (soft_silhouette(v, torch.zeros(0, 3, dtype=torch.long), 8) == 0).all()


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
