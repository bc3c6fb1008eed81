"""hybrid_pose.natural_poses beyond its notebook's checks: random sweeps over the sampler's options (limits, mirror
symmetry against an independent mirror of the posed skeleton, the turned body's up direction), and the image and
critic streams kept apart through the synthetic generator."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from smplx.lbs import batch_rodrigues

from hybrid_pose import natural_poses as NP
from hybrid_pose.body import SMPL_JOINT_NAMES, load_body_model
from hybrid_pose.poses import joint_limit_violation


def rot(pose):
    return batch_rodrigues(pose.reshape(-1, 3).double()).reshape(-1, 24, 3, 3)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("noise", [0.0, 0.1, 0.6])
def test_every_draw_inside_the_limits(seed, noise):
    g = torch.Generator().manual_seed(seed)
    smp = NP.NaturalPoseSampler(noise=noise, root=["upright", "camera", "random", "zero"][seed])
    pose, betas = smp.sample(500, g)
    assert torch.isfinite(pose).all() and torch.isfinite(betas).all()
    v = joint_limit_violation(rot(pose), tol_deg=0.01)
    assert int(v.count.sum()) == 0, v.summary()


@pytest.mark.parametrize("seed", range(3))
def test_mirrored_draw_is_the_mirror_image(seed):
    # same generator state, mirror probability 0 vs 1, no noise or lean: the skeletons are reflections in x = 0
    body = load_body_model("open", dtype=torch.float64)
    kw = dict(noise=0.0, lean_std=0.0, root="zero", betas_std=0.0)
    a = NP.NaturalPoseSampler(mirror=0.0, **kw).draw(64, torch.Generator().manual_seed(seed))
    b = NP.NaturalPoseSampler(mirror=1.0, **kw).draw(64, torch.Generator().manual_seed(seed))
    assert torch.equal(a.activity, b.activity) and not a.mirrored.any() and b.mirrored.all()
    swap = [SMPL_JOINT_NAMES.index(n.replace("left_", "#").replace("right_", "left_").replace("#", "right_"))
            for n in SMPL_JOINT_NAMES]
    with torch.no_grad():
        ja = body(a.pose.double(), torch.zeros(64, 10, dtype=torch.float64)).joints
        jb = body(b.pose.double(), torch.zeros(64, 10, dtype=torch.float64)).joints
    mirrored = ja[:, swap] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert (mirrored - jb).abs().max() < 1e-3          # the open model's rest skeleton is symmetric to 0.2 mm


def test_upright_draws_stand_up_within_the_lean():
    # activities whose keyframes keep the root at rest: after the sampler's turn the body's up is within a few
    # lean standard deviations of +y, and the headings cover the circle
    quiet = [a for a, ks in NP.ACTIVITIES.items() if all("root" not in k for k in ks)]
    smp = NP.NaturalPoseSampler(activities=quiet, lean_std=8.0, root="upright")
    pose, _ = smp.sample(4000, torch.Generator().manual_seed(0))
    R = Rotation.from_rotvec(pose[:, :3].double().numpy())
    tilt = np.degrees(np.arccos(np.clip(R.apply([0, 1, 0])[:, 1], -1, 1)))
    assert np.percentile(tilt, 99) < 8.0 * 3.5 and 8.0 * 0.8 < np.sqrt(np.mean(tilt ** 2) / 2) < 8.0 * 1.2
    fwd = R.apply([0, 0, 1])
    heading = np.degrees(np.arctan2(fwd[:, 0], fwd[:, 2]))
    counts = np.histogram(heading, bins=8, range=(-180, 180))[0]
    assert counts.min() > 0.8 * len(heading) / 8


def test_image_and_critic_streams_are_disjoint():
    from hybrid_pose.synthetic import sample_parameters
    images = torch.stack([sample_parameters(k, seed=0)["pose"][3:] for k in range(1, 201)])
    it = NP.NaturalPoseSampler(root="zero").batches(50, seed=0)
    critic = torch.cat([next(it).pose[:, 3:] for _ in range(4)])
    d = torch.cdist(images, critic)
    assert float(d.min()) > 1e-3                        # no critic pose repeats an image's pose
