"""The critic and HMR's discriminator from the outside (the KCS, canonical-frame and hand-computed gradient-penalty
checks live under the code in 05_critic): a learning test (the critic separates sampler poses from noise), both priors
on CPU and CUDA, the `Prior` protocol (three `update`s against hand-written steps with the original formulas, the
device-side skip) and the registry."""
import copy, time

import numpy as np
import pytest
import torch
from torch import nn

from hybrid_pose.critic import (PRIORS, Critic, HMRDiscriminator, HMRPrior, Prior, WGANCritic, build_prior,
                                critic_loss, generator_adversarial_loss, gradient_penalty, lsgan_discriminator_loss,
                                lsgan_generator_loss, prior_options, register_prior, separation_accuracy)
from hybrid_pose.critic import CriticInput, CriticInputLayer
from hybrid_pose.poses import JointLimitSampler, random_axis_angle


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
    prior = build_prior("critic")
    steps, B = 300, 24
    with torch.no_grad(): R, F = real(steps * B), fake(steps * B)
    for s in range(steps):
        prior.update(R[s * B:(s + 1) * B], F[s * B:(s + 1) * B])
    with torch.no_grad():
        threshold = float((prior.score(R[-480:]).mean() + prior.score(F[-480:]).mean()) / 2)  # from training data
        acc = separation_accuracy(prior.score(real(1000)), prior.score(fake(1000)), threshold)  # on fresh poses
    print(f"learning test: accuracy {acc:.1%} after {steps} steps, {time.time() - t0:.1f} s")
    assert acc > 0.9


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind,options", [("critic", {"gp_mode": "per_sample"}), ("critic", {"gp_mode": "authors"}), ("hmr", {})])
def test_priors_forward_backward(device, kind, options):
    g = torch.Generator().manual_seed(4)
    def batch(n):
        return CriticInput(torch.randn(n, 14, 3, generator=g), torch.randn(n, 10, generator=g),
                           torch.randn(n, 23, 3, 3, generator=g)).to(device)
    prior = build_prior(kind, **options).to(device)
    before = [p.detach().clone() for p in prior.parameters()]
    stats = prior.update(batch(6), batch(6))
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad and v.device.type == device for v in stats.values())
    assert all(np.isfinite(float(v)) for v in stats.values())
    assert any(not torch.equal(p0, p) for p0, p in zip(before, prior.parameters()))
    fk = batch(6)
    fk = CriticInput(fk.joints.requires_grad_(), fk.betas.requires_grad_(), fk.rotmats.requires_grad_())
    prior.generator_loss(fk).backward()
    assert fk.rotmats.grad.abs().sum() > 0 and fk.betas.grad.abs().sum() > 0
    assert prior.score(fk).shape == (6,) and prior(fk).shape == (6, 3 if kind == "critic" else 25) == (6, len(prior.heads))
    assert prior(fk).device.type == device


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown prior 'wgan'; valid: 'none', 'critic', 'hmr'"):
        build_prior("wgan")
    with pytest.raises(ValueError, match="gp_mode"):
        build_prior("critic", gp_mode="none")
    with pytest.raises(ValueError, match="prior 'hmr' has no option 'rotations'; its options: lr, weight_decay$"):
        build_prior("hmr", rotations=False)
    with pytest.raises(ValueError, match="prior 'critic' has no option 'kind'; its options: gp_weight, gp_mode, canonical, rotations, lr, weight_decay"):
        build_prior("critic", kind="critic")
    x = CriticInput(torch.zeros(3, 14, 3), torch.zeros(3, 10), torch.zeros(3, 23, 3, 3))
    with pytest.raises(ValueError, match="as many real as fake"):
        gradient_penalty(Critic(), x, x[:2])
    assert HMRDiscriminator()(None, x.betas, x.rotmats).shape == (3, 25)


def _batch(n, g, dtype=torch.float32):
    return CriticInput(torch.randn(n, 14, 3, generator=g, dtype=dtype), torch.randn(n, 10, generator=g, dtype=dtype),
                       torch.randn(n, 23, 3, 3, generator=g, dtype=dtype))


def _reference_optimizer(net, kind, lr):
    "The optimisers of the originals, written out: the critic Adam(lr 5e-4, ε 1e-7), HMR Adam(lr 1e-4; its L2 never acted)."
    if kind == "critic": return torch.optim.Adam(net.parameters(), lr=lr or 5e-4, betas=(0.9, 0.999), eps=1e-7, fused=True)
    return torch.optim.Adam(net.parameters(), lr=lr or 1e-4, fused=True)


@pytest.mark.parametrize("kind,options", [("critic", {}), ("critic", {"gp_mode": "authors", "gp_weight": 5.0}),
                                          ("critic", {"rotations": False, "canonical": False, "lr": 1e-3}),
                                          ("critic", {"gp_weight": 0.0}), ("hmr", {}), ("hmr", {"lr": 3e-4})])
def test_update_is_the_original_step(kind, options):
    """Three `update`s = three hand-written steps with the original formulas and optimisers, on the same seeds: same
    losses, same weights."""
    torch.manual_seed(0); prior = build_prior(kind, **options)
    torch.manual_seed(0); ref = build_prior(kind, **options).net                    # the same initial weights
    opt = _reference_optimizer(ref, kind, options.get("lr"))
    lam, mode = options.get("gp_weight", 10.0), options.get("gp_mode", "per_sample")
    g = torch.Generator().manual_seed(1)
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for _ in range(3):
        real, fake = _batch(8, g), _batch(8, g)
        stats = prior.update(real, fake, generator=g1)
        opt.zero_grad()
        s_r, s_f = ref(real.joints, real.betas, real.rotmats), ref(fake.joints, fake.betas, fake.rotmats)
        if kind == "critic":
            gp = gradient_penalty(ref, real, fake, mode, generator=g2) if lam else torch.zeros(())
            loss = critic_loss(s_r, s_f) + lam * gp
            torch.testing.assert_close(stats["gp"], gp.detach())
            torch.testing.assert_close(stats["wasserstein"], (s_r.mean(0) - s_f.mean(0)).sum().detach())
        else:
            loss = lsgan_discriminator_loss(s_r, s_f)
            torch.testing.assert_close(stats["d_real"], s_r.mean().detach())
        torch.testing.assert_close(stats["loss"], loss.detach())
        loss.backward(); opt.step()
    for (n, p), q in zip(prior.net.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, msg=n)
    fk = _batch(8, g)
    s = ref(fk.joints, fk.betas, fk.rotmats)
    gen = generator_adversarial_loss(s) if kind == "critic" else lsgan_generator_loss(s)
    torch.testing.assert_close(prior.generator_loss(fk), gen)
    torch.testing.assert_close(prior.score(fk), s.sum(1) if kind == "critic" else -(s - 1).square().sum(1))


def test_update_detaches_fakes_and_calls_sync_grads():
    g = torch.Generator().manual_seed(5)
    prior, seen = build_prior("critic"), []
    theta = torch.zeros((), requires_grad=True)
    real, f = _batch(6, g), _batch(6, g)
    fake = CriticInput(f.joints * (1 + theta), f.betas * (1 + theta), f.rotmats * (1 + theta))   # attached to theta
    def zero(params):
        for p in params: seen.append(p.grad is not None); p.grad.zero_()
    before = [p.detach().clone() for p in prior.parameters()]
    prior.update(real, fake, sync_grads=zero)
    assert theta.grad is None                                     # the prior's step never reaches the generator
    assert len(seen) == len(before) and all(seen)                 # called with every parameter, after backward
    assert all(torch.equal(p0, p) for p0, p in zip(before, prior.parameters()))  # ... and before the step
    prior.generator_loss(f).backward()                            # leaves gradients in the prior ...
    stats = prior.update(real, f)                                 # ... which update clears before its own
    assert not any(torch.equal(p0, p) for p0, p in zip(before, prior.parameters()) if p.ndim > 1)
    assert set(stats) == {"loss", "wasserstein", "w_skeleton", "w_shape", "w_rotation", "gp"}


def test_checkpoint_state():
    "Weights under `net.` (the keys of earlier checkpoints) and the optimiser's state round-trip."
    g = torch.Generator().manual_seed(6)
    for name in PRIORS:
        a, b = build_prior(name), build_prior(name)
        assert all(k.startswith("net.") for k in a.state_dict())
        a.update(_batch(4, g), _batch(4, g))
        b.load_state_dict(a.state_dict()); b.optimizer.load_state_dict(copy.deepcopy(a.optimizer.state_dict()))  # as from a file
        real, fake, x = _batch(4, g), _batch(4, g), _batch(4, g)
        a.update(real, fake, torch.Generator().manual_seed(8)); b.update(real, fake, torch.Generator().manual_seed(8))
        torch.testing.assert_close(a.score(x), b.score(x))


def test_registry():
    assert set(PRIORS) == {"critic", "hmr", "fixedcritic"} and PRIORS["critic"] is WGANCritic and PRIORS["hmr"] is HMRPrior
    assert issubclass(PRIORS["fixedcritic"], WGANCritic) and PRIORS["fixedcritic"].recipe.update_every == 0
    assert WGANCritic.name == "critic" and HMRPrior.name == "hmr" and build_prior("none") is None
    assert isinstance(build_prior("critic", gp_weight=1.0, rotations=False, lr=None), Prior)
    assert build_prior("critic").optimizer.param_groups[0]["lr"] == 5e-4
    assert [g["lr"] for g in build_prior("hmr").optimizer.param_groups] == [1e-4]
    assert build_prior("critic", lr=2e-4).optimizer.param_groups[0]["lr"] == 2e-4
    assert len(HMRPrior.heads) == 25 and build_prior("critic").heads == ("skeleton", "shape", "rotation")

    class Flat(Prior):                                           # a learning-free prior: one class, one registry entry
        heads = ("shape",)
        def __init__(self, weight: float = 1.0, lr: float | None = None):
            super().__init__(); self.weight = weight; self.optimizer = torch.optim.SGD([{"params": []}], lr=0.0)
        def forward(self, x): return -self.weight * x.betas.square().sum(1, keepdim=True)
        def score(self, x): return self(x)[:, 0]
        def generator_loss(self, fake): return -self.score(fake).mean()
        def update(self, real, fake, generator=None, sync_grads=None, skip=None): return {}
    try:
        register_prior("flat")(Flat)
        assert prior_options("flat") == ("weight", "lr")
        p = build_prior("flat", weight=2.0)
        x = _batch(3, torch.Generator().manual_seed(7))
        assert p.name == "flat" and p.update(x, x) == {} and p.optimizer.state_dict()["state"] == {}
        torch.testing.assert_close(p.generator_loss(x), 2 * x.betas.square().sum(1).mean())
        with pytest.raises(ValueError, match="prior 'flat' has no option 'gp_weight'; its options: weight, lr"):
            build_prior("flat", gp_weight=10.0)
        with pytest.raises(ValueError, match="is taken by WGANCritic"):
            register_prior("critic")(Flat)
        with pytest.raises(ValueError, match="'none' is taken"):
            register_prior("none")(Flat)
        with pytest.raises(TypeError, match="not a Prior"):
            register_prior("module")(nn.Linear)
    finally:
        PRIORS.pop("flat", None)
    assert set(PRIORS) == {"critic", "hmr", "fixedcritic"}
