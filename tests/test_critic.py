"""The critic and HMR's discriminator from the outside: KCS properties, the gradient penalty against a hand
computation, a learning test (the critic separates sampler poses from noise), both priors on CPU and CUDA."""
import time

import numpy as np
import pytest
import torch
from torch import nn

from hybrid_pose.critic import (KCS_PARENTS, Critic, HMRDiscriminator, PosePrior, canonical_joints, gradient_penalty,
                                kcs_incidence, kcs_matrix, prior_step, separation_accuracy)
from hybrid_pose.poses import CriticInput, CriticInputLayer, JointLimitSampler, random_axis_angle


def random_rotations(n, g):
    q = torch.randn(n, 4, generator=g, dtype=torch.float64); q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1).reshape(n, 3, 3)


def test_kcs_matrix():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, 14, 3, generator=g, dtype=torch.float64)
    K = kcs_matrix(X)
    assert K.shape == (4, 13, 13)
    for n in range(4):                                    # explicit: bones child − parent, then BᵀB
        bones = torch.stack([X[n, b] - X[n, p] for b, p in enumerate(KCS_PARENTS)])
        torch.testing.assert_close(K[n], bones @ bones.T)
        torch.testing.assert_close(torch.diagonal(K[n]), (bones ** 2).sum(1))    # squared bone lengths
        B = X[n].T @ kcs_incidence(torch.float64)                                 # the matrix form B = X C
        torch.testing.assert_close(K[n], B.T @ B)
    Q = random_rotations(4, g)
    torch.testing.assert_close(kcs_matrix(X @ Q.transpose(1, 2)), K)              # rotation-invariant
    assert len(KCS_PARENTS) == 13 and set(KCS_PARENTS) <= set(range(14))


def test_canonical_joints_remove_orientation():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(5, 14, 3, generator=g, dtype=torch.float64)
    Q = random_rotations(5, g)
    torch.testing.assert_close(canonical_joints(X @ Q.transpose(1, 2) - 2.0), canonical_joints(X))


class Linear3(nn.Module):
    "A critic with a known, constant gradient (a, b, c) in (joints, betas, rotmats)."
    def __init__(self, a, b, c): super().__init__(); self.a, self.b, self.c = a, b, c
    def forward(self, joints, betas, rotmats, kcs=None):
        return torch.stack([(joints * self.a).sum((1, 2)), betas @ self.b, (rotmats * self.c).sum((1, 2, 3))], 1)


def test_gradient_penalty_hand_computation():
    g = torch.Generator().manual_seed(2)
    a = torch.full((14, 3), 0.1, dtype=torch.float64)               # ‖a‖ = 0.1·√42
    b = torch.zeros(10, dtype=torch.float64); b[0] = 3.0             # ‖b‖ = 3
    c = torch.zeros(23, 3, 3, dtype=torch.float64); c[0, 0, 0] = 1.0  # ‖c‖ = 1
    mk = lambda: CriticInput(torch.randn(8, 14, 3, generator=g, dtype=torch.float64),
                             torch.randn(8, 10, generator=g, dtype=torch.float64),
                             torch.randn(8, 23, 3, 3, generator=g, dtype=torch.float64))
    real, fake = mk(), mk()
    hand = (0.1 * 42 ** 0.5 - 1) ** 2 + (3 - 1) ** 2 + 0.0
    gp = gradient_penalty(Linear3(a, b, c), real, fake)
    assert abs(float(gp) - hand) < 1e-10
    terms = gradient_penalty(Linear3(a, b, c), real, fake, mode="authors", reduce=False)
    torch.testing.assert_close(terms, torch.tensor([1.0, (0.1 * 42 ** 0.5 - 1) ** 2, 4.0, 0.0], dtype=torch.float64))


def test_gradient_penalty_of_a_quadratic_critic_per_sample():
    "f = ½‖X‖² has gradient X̂, so the penalty is mean_n (‖X̂_n‖ − 1)² at the chosen interpolates."
    class Quad(nn.Module):
        def forward(self, joints, betas, rotmats, kcs=None):
            z = joints.new_zeros(len(joints))
            return torch.stack([0.5 * joints.square().sum((1, 2)), z + betas.sum(1) * 0, z + rotmats.sum((1, 2, 3)) * 0], 1)
    g = torch.Generator().manual_seed(3)
    r = CriticInput(torch.randn(4, 14, 3, generator=g, dtype=torch.float64) * 0.3, torch.zeros(4, 10, dtype=torch.float64),
                    torch.zeros(4, 23, 3, 3, dtype=torch.float64))
    f = CriticInput(torch.randn(4, 14, 3, generator=g, dtype=torch.float64) * 0.1, r.betas, r.rotmats)
    alpha = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    xh = f.joints + alpha[:, None, None] * (r.joints - f.joints)
    expect = ((xh.flatten(1).norm(dim=1) - 1) ** 2).mean()
    got = gradient_penalty(Quad(), r, f, alpha=alpha, reduce=False)
    torch.testing.assert_close(got, torch.stack([expect, torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)]))


def test_critic_learns_sampler_vs_noise():
    "A few hundred CPU steps, fixed seed: sampler poses vs random axis-angle noise (same roots and β) > 90 %."
    from hybrid_pose.body import load_body_model
    t0 = time.time()
    torch.manual_seed(0)
    layer = CriticInputLayer(load_body_model("open"))
    g = torch.Generator().manual_seed(0)
    sampler = JointLimitSampler()
    def real(n): return layer(*sampler.sample(n, g))
    def fake(n): return layer(random_axis_angle(n, 1.0, generator=g), torch.randn(n, 10, generator=g))
    prior = PosePrior("critic")
    opt = prior.make_optimizer()
    steps, B = 300, 24
    with torch.no_grad(): R, F = real(steps * B), fake(steps * B)
    for s in range(steps):
        prior_step(prior, opt, R[s * B:(s + 1) * B], F[s * B:(s + 1) * B])
    with torch.no_grad():
        threshold = float((prior.score(R[-480:]).mean() + prior.score(F[-480:]).mean()) / 2)  # from training data
        acc = separation_accuracy(prior.score(real(1000)), prior.score(fake(1000)), threshold)  # on fresh poses
    print(f"learning test: accuracy {acc:.1%} after {steps} steps, {time.time() - t0:.1f} s")
    assert acc > 0.9


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,gp_mode", [("critic", "per_sample"), ("critic", "authors"), ("hmr", "per_sample")])
def test_priors_forward_backward(device, kind, gp_mode):
    g = torch.Generator().manual_seed(4)
    def batch(n):
        return CriticInput(torch.randn(n, 14, 3, generator=g), torch.randn(n, 10, generator=g),
                           torch.randn(n, 23, 3, 3, generator=g)).to(device)
    prior = PosePrior(kind, gp_mode=gp_mode).to(device)
    opt = prior.make_optimizer()
    before = [p.detach().clone() for p in prior.parameters()]
    stats = prior_step(prior, opt, batch(6), batch(6))
    assert all(np.isfinite(v) for v in stats.values())
    assert any(not torch.equal(p0, p) for p0, p in zip(before, prior.parameters()))
    fk = batch(6)
    fk = CriticInput(fk.joints.requires_grad_(), fk.betas.requires_grad_(), fk.rotmats.requires_grad_())
    prior.generator_loss(fk).backward()
    assert fk.rotmats.grad.abs().sum() > 0 and fk.betas.grad.abs().sum() > 0
    assert prior.score(fk).shape == (6,) and prior(fk).shape == (6, 3 if kind == "critic" else 25)
    assert prior(fk).device.type == device


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind must be"):
        PosePrior("wgan")
    with pytest.raises(ValueError, match="gp_mode"):
        PosePrior("critic", gp_mode="none")
    x = CriticInput(torch.zeros(3, 14, 3), torch.zeros(3, 10), torch.zeros(3, 23, 3, 3))
    with pytest.raises(ValueError, match="as many real as fake"):
        gradient_penalty(Critic(), x, x[:2])
    assert HMRDiscriminator()(None, x.betas, x.rotmats).shape == (3, 25)
