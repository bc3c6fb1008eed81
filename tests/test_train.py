"""The trainer beyond its notebook (which checks the config, exact resume, refusals, the NaN guard, the time budget
and the logs): learning, every cell of the settings matrix, DDP (gloo, 2 processes), bad data, validation and
TensorBoard, CUDA. Everything runs on the CPU on a few synthetic people with a small ResNet-18."""
import dataclasses, json, math, os, subprocess, sys
from pathlib import Path

import pytest
import torch

from hybrid_pose.synthetic import generate_synthetic
from hybrid_pose.train import TrainConfig, Trainer, train, HostSyncCounter, LOSSES, PRIORS
from hybrid_pose.checkpoint import Checkpoint
from hybrid_pose.critic import PRIORS as PRIOR_CLASSES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate_synthetic(root / "synthetic", n=10, seed=0, progress=False)
    return root


def small(data_root, out, **kw):
    base = dict(data_root=str(data_root), dataset="synthetic", body_model="open", backbone="resnet18", pretrained="no",
                img_size=64, batch_size=2, max_train_images=8, num_workers=0, max_steps=3, log_every=1,
                out_dir=str(out), progress=False, tensorboard=False, val_every=-1, ckpt_every=0)
    return TrainConfig(**(base | kw))


def test_learning_cuts_kpr_5x(data_root, tmp_path):
    """50 steps on 8 synthetic images: KPR falls at least 5x (dropout off: its noise hides a 50-step fit)."""
    cfg = small(data_root, tmp_path / "run", img_size=128, batch_size=8, augment=False, max_steps=50, gen_lr=1e-3,
                losses="kpr", prior="none", dropout=0.0)
    tr = train(cfg)
    first, last = tr.history[0]["kpr"], tr.history[-1]["kpr"]
    print(f"KPR {first:.2f} -> {last:.2f} ({first / last:.1f}x)")
    assert first / last >= 5, (first, last)


@pytest.mark.parametrize("losses", ["kpr", "mr", "both", "kpr3d"])   # the named objectives (compositions: below)
@pytest.mark.parametrize("prior", list(PRIORS))
def test_settings_matrix(data_root, tmp_path, losses, prior):
    tr = train(small(data_root, tmp_path / "run", losses=losses, prior=prior))
    assert tr.result["status"] == "done" and tr.step == 3 and tr.nan_skipped == 0
    assert all(math.isfinite(r["loss"]) for r in tr.history)
    if prior != "none":   # a prior updated during training logs its loss; a fixed one (update_every 0) has nothing to log
        assert ("critic_loss" in tr.history[-1]) == bool(PRIOR_CLASSES[prior].recipe.update_every)
    ck = Checkpoint.load(tmp_path / "run")
    assert ck.setting == f"{losses}+{prior}" and ck.step == 3 and ("prior" in ck.data) == (prior != "none")


def test_critic_without_rotations(data_root, tmp_path):
    tr = train(small(data_root, tmp_path / "run", prior="critic", prior_options=dict(rotations=False)))
    assert tr.prior.net.heads == ("skeleton", "shape") and tr.cfg.setting == "both+critic-norot"
    assert "critic_w_rotation" not in tr.history[-1] and "critic_w_shape" in tr.history[-1]


def test_corrupt_image_does_not_stop_training(data_root, tmp_path):
    import shutil
    root = tmp_path / "data"; shutil.copytree(data_root, root)
    tr = Trainer(small(root, tmp_path / "run", prior="none", max_steps=6))
    img = root / "synthetic" / "images" / "im0003.jpg"
    img.write_bytes(img.read_bytes()[:300])                                 # truncated after construction
    res = tr.fit()
    assert res["status"] == "done" and tr.step == 6
    assert sum(res["skipped_images"].values()) >= 1, res


def _ddp_step(cfg: TrainConfig, out: Path, nproc: int) -> dict:
    "Run tests/_ddp_step.py on `nproc` processes (torchrun, gloo), one thread each, and read what rank 0 saved."
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    launch = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc > 1 else [])
    r = subprocess.run(launch + [str(ROOT / "tests" / "_ddp_step.py"), json.dumps(dataclasses.asdict(cfg)), str(out)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return torch.load(out, weights_only=True)


def test_ddp_gradient_equals_single_process(data_root, tmp_path):
    """What DDP must guarantee, tested where it is exact (not three Adam steps, which amplify rounding into sign flips):
    the all-reduced gradient of a step on 2 processes x batch 2 equals the gradient of 1 process x batch 4 (the same 4
    images), to float rounding; and after the optimiser step both ranks hold identical weights. Both runs are
    subprocesses with one thread each (BatchNorm frozen, no dropout: per-process batch statistics are not DDP's job)."""
    kw = dict(batch_size=4, prior="none", freeze_bn=True, dropout=0.0, augment=True, max_steps=2, gen_lr=1e-3)
    one = _ddp_step(small(data_root, tmp_path / "one", **kw), tmp_path / "one.pt", 1)
    two = _ddp_step(small(data_root, tmp_path / "two", **kw), tmp_path / "two.pt", 2)
    assert (one["world"], one["local_batch"], two["world"], two["local_batch"]) == (1, 4, 2, 2)
    g1, g2 = one["grads"], two["grads"]
    assert g1.keys() == g2.keys() and len(g1) > 10
    flat1 = torch.cat([g1[k].flatten() for k in g1]).double()
    flat2 = torch.cat([g2[k].flatten() for k in g1]).double()
    rel = ((flat1 - flat2).norm() / flat1.norm()).item()
    worst = max(((g1[k] - g2[k]).abs().max() / g1[k].abs().max().clamp(min=1e-12)).item() for k in g1)
    print(f"DDP vs single-process gradient: relative L2 gap {rel:.2e}, worst tensor (max-normalised) {worst:.2e}")
    assert flat1.norm() > 0 and rel < 1e-5 and worst < 1e-4, (rel, worst)
    ranks = two["params"]
    assert len(ranks) == 2 and all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])   # bit-identical replicas
    assert not torch.equal(two["draws"][0], two["draws"][1])           # ... whose random streams differ (per-rank seeds)
    assert two["sync_bn"] is False                                     # SyncBatchNorm needs CUDA: off on gloo/CPU


def test_validation_and_tensorboard(data_root, tmp_path):
    """val_every=0 validates once at the end (deterministic, `evaluate`); TensorBoard events sit next to the CSVs."""
    tr = train(small(data_root, tmp_path / "run", prior="critic", max_steps=2, val_every=0, tensorboard=True))
    assert len(tr.val_history) == 1 and tr.val_history[0]["step"] == 2
    assert tr.val_history[0]["KPR_paper"] > 0 and tr.val_history[0]["images"] == len(tr.val_set)
    assert (tmp_path / "run" / "val.csv").read_text().startswith("step,")
    tr = train(small(data_root, tmp_path / "every", max_steps=4, val_every=2))   # at steps 2 and 4; the end (4) not twice
    assert [r["step"] for r in tr.val_history] == [2, 4]
    events = list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100


@pytest.mark.parametrize("prior", ["critic", "hmr"])
def test_host_syncs_do_not_grow_with_the_batch(data_root, tmp_path, prior):
    """The notebook checks the budget at batch 8; here the count is the same at batch 2 and 8 (the earlier step read
    back per-joint and per-term scalars, so its count grew with the work), with the MR search a GPU runs."""
    import dataclasses
    totals = []
    for b in (2, 8):
        tr = Trainer(small(data_root, tmp_path / f"b{b}", batch_size=b, prior=prior, log_every=10))
        tr.objective = dataclasses.replace(tr.objective, mr_backend="batched")
        batch = next(iter(tr._loader())); tr.train_step(batch)
        with HostSyncCounter() as c: tr.train_step(batch)
        totals.append(c.total(exclude=("body", "poses")))
    print(f"{prior}: host syncs outside the body layer at batch 2 and 8: {totals}")
    assert totals[0] == totals[1] <= 5, totals


def test_resume_compares_the_resolved_recipe(data_root, tmp_path):
    """A checkpoint whose config predates a field reads it as its default; the prior's recipe is compared as resolved:
    a critic run saved with adv_weight 0.01 resumes, an HMR run saved with 0.01 is refused under HMR's recipe (1)."""
    import dataclasses, json
    from hybrid_pose.train import config_changes
    old = json.loads((ROOT / "tests" / "fixtures" / "trainconfig_v1.json").read_text())   # asdict(TrainConfig()) of the flat config
    new = dataclasses.asdict(small(data_root, tmp_path / "r", prior="critic"))
    saved = old | {k: v for k, v in new.items() if k in old}
    for k in ("adv_stages", "critic_weight_decay", "amp_dtype", "sync_bn", "deterministic"): saved.pop(k)
    saved["adv_weight"] = 0.01                                          # what older checkpoints hold
    assert config_changes(saved, small(data_root, tmp_path / "r", prior="critic")) == {}
    saved["prior"] = "hmr"
    assert config_changes(saved, small(data_root, tmp_path / "r", prior="hmr")) == {"prior_options.adv_weight": (0.01, 1.0)}
    saved |= dict(prior="critic", adv_weight=-1.0, critic_rotations=False, kpr_weight=30.0)
    assert config_changes(saved, small(data_root, tmp_path / "r", prior="critic")) == {
        "prior_options.rotations": (False, True), "weights.kpr": (30.0, 60.0)}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_amp_channels_last(data_root, tmp_path):
    """On a GPU: AMP + channels_last train without non-finite steps, and the checkpoint resumes on the CPU."""
    tr = train(small(data_root, tmp_path / "run", device="cuda", amp=True, channels_last=True, prior="critic",
                     img_size=128, batch_size=4, max_steps=10))
    assert tr.amp and tr.result["status"] == "done" and tr.nan_skipped == 0
    assert all(math.isfinite(r["loss"]) for r in tr.history)
    cpu = Trainer(small(data_root, tmp_path / "run", device="cpu", amp=True, prior="critic", img_size=128, batch_size=4,
                        max_steps=12))
    assert cpu.step == 10 and not cpu.amp
    cpu.result = cpu.fit()
    assert cpu.step == 12


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_syncs(data_root, tmp_path):
    """On a GPU, CUDA's own detector (`torch.cuda.set_sync_debug_mode`) agrees with the CPU count of the notebook: at
    most 5 synchronising calls per step outside the body layer, each attributed to the innermost `hybrid_pose` frame."""
    import traceback, warnings
    tr = Trainer(small(data_root, tmp_path / "run", device="cuda", batch_size=8, log_every=10))
    assert tr.amp and torch.backends.cudnn.benchmark
    batch = next(iter(tr._loader())); tr.train_step(batch); torch.cuda.synchronize()
    where = []
    def hook(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message).lower():
            frames = [f.filename for f in traceback.extract_stack() if f"{os.sep}hybrid_pose{os.sep}" in f.filename]
            where.append(Path(frames[-1]).stem if frames else "other")
    with warnings.catch_warnings():
        warnings.simplefilter("always"); warnings.showwarning = hook
        torch.cuda.set_sync_debug_mode("warn")
        try: tr.train_step(batch)
        finally: torch.cuda.set_sync_debug_mode("default")
    print(f"CUDA syncs in one step, by module: {dict((m, where.count(m)) for m in set(where))}")
    assert sum(1 for m in where if m != "body") <= 5, where


def test_composed_setting_trains_and_logs_every_registered_term(data_root, tmp_path):
    """A composition with no named key (kpr+mr+j3d with the fixed critic) trains; metrics.csv has a column per registered term."""
    from hybrid_pose.train import setting_fields
    from hybrid_pose.losses import TERMS
    tr = train(small(data_root, tmp_path / "run", **setting_fields("j3d+mr+kpr+fixedcritic")))
    assert tr.result["status"] == "done" and tr.cfg.setting == "j3d+mr+kpr+fixedcritic"
    assert tr.objective.names == ("kpr", "mr", "j3d") and all(math.isfinite(tr.history[-1][t]) for t in ("kpr", "mr", "j3d"))
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert [c for c in header if c in TERMS] == list(TERMS)


def test_profile_and_config_file_are_the_same_run(data_root, tmp_path):
    """--profile quick and configs/quick.toml (body_model 'open' written out) resolve to the same model: no refusal on resume."""
    from hybrid_pose.train import load_config, config_changes
    sets = [f"data_root={data_root}", "out_dir=" + str(tmp_path / "q")]
    by_file = load_config(ROOT / "configs" / "quick.toml", overrides=sets)
    by_profile = load_config(profile="quick", overrides=sets + ["dataset=synthetic", "max_steps=300", "log_every=25",
                                                                "ckpt_every=100", "tensorboard=false"])
    assert by_profile.body_model == "auto" and by_file.body_model == "open"
    assert config_changes(dataclasses.asdict(by_file), by_profile) == {}


def test_unwritable_out_dir_and_missing_gpu_fail_before_any_work(data_root, tmp_path):
    from hybrid_pose.base import UsageError
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="TrainConfig.out_dir .*file"):
        Trainer(small(data_root, tmp_path / "file" / "run"))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            Trainer(small(data_root, tmp_path / "run", device="cuda"))


def test_cpu_threads():
    from hybrid_pose.train import cpu_threads
    assert cpu_threads(3, 1, cores=8) == (3, None)                              # asked for: as asked
    n, warn = cpu_threads(2, 2, cores=2)
    assert n == 2 and "2 threads x 2 process(es) exceed the 2 cores" in warn and "threads=1" in warn
    env = os.environ.pop("OMP_NUM_THREADS", None)
    try:
        assert cpu_threads(0, 1, cores=2) == (1, None) and cpu_threads(0, 2, cores=16) == (8, None)
    finally:
        if env is not None: os.environ["OMP_NUM_THREADS"] = env


@pytest.mark.parametrize("workers", [0, 1])
def test_ctrl_c_saves_and_the_rerun_continues(data_root, tmp_path, workers):
    """SIGINT during `hybrid-pose train`: a checkpoint at a step boundary, one line, exit 130; the rerun says where it resumes
    and the elapsed time adds up across the two invocations."""
    import signal, time
    from hybrid_pose.checkpoint import Checkpoint
    out = tmp_path / "run"
    args = [sys.executable, "-m", "hybrid_pose.train", "--set", f"data_root={data_root}", "dataset=synthetic", "body_model=open",
            "backbone=resnet18", "pretrained=no", "img_size=64", "batch_size=2", f"num_workers={workers}", "max_steps=100000",
            "log_every=1", "prior=none", "val_every=-1", "tensorboard=false", "progress=false", f"out_dir={out}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "metrics.csv"
    t0 = time.time()
    while (not metrics.exists() or len(metrics.read_text().splitlines()) < 4) and time.time() - t0 < 120: time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)                                       # as a terminal's Ctrl-C: the loader workers too
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted at step" in stdout and "rerun the same command to continue" in stdout
    ck = Checkpoint.load(out)
    assert ck.step >= 3 and ck["elapsed_s"] > 0
    rows = metrics.read_text().splitlines()[1:]
    assert int(rows[-1].split(",")[0]) <= ck.step
    r = subprocess.run(args[:-7] + ["max_steps=" + str(ck.step + 2)] + args[-6:], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming {out} from step {ck.step} of {ck.step + 2}" in r.stdout
    assert Checkpoint.load(out)["elapsed_s"] > ck["elapsed_s"]


def test_evidence_input_learns_saves_evaluates_and_is_refused_by_predict(data_root, tmp_path):
    """The perception-free input: trains (KPR falls), round-trips through its checkpoint to the same predictions, is
    scored by `hybrid-pose evaluate`, and `predict` refuses it on a photograph in one line (exit 2)."""
    from hybrid_pose.data import PoseDataset, make_loader
    from hybrid_pose.predict import network_from_checkpoint, PredictError
    cfg = small(data_root, tmp_path / "ev", input="evidence", batch_size=8, augment=False, max_steps=40, gen_lr=1e-3,
                losses="kpr", prior="none", dropout=0.0, ckpt_every=0)
    tr = train(cfg)
    first, last = tr.history[0]["kpr"], tr.history[-1]["kpr"]
    assert first / last >= 3, (first, last)
    ck = Checkpoint.load(tmp_path / "ev")
    net = ck.network().eval()
    assert net.config["input"] == "evidence" and net.input_mode.photographs is False
    b = next(iter(make_loader(PoseDataset(data_root, "synthetic", "train", augment=False, size=64), batch_size=4, shuffle=False)))
    with torch.no_grad():
        torch.testing.assert_close(net.predict_batch(b)[-1], tr.net.eval().predict_batch(b)[-1])
    with pytest.raises(PredictError, match="not photographs"):
        network_from_checkpoint(ck)
    r = subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "evaluate", str(tmp_path / "ev"), "--split", "train",
                        "--no-progress", "--no-baselines", "--out", str(tmp_path / "ev_eval")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    img = tmp_path / "photo.jpg"
    from PIL import Image; Image.new("RGB", (64, 96), (120, 90, 60)).save(img)
    r = subprocess.run([sys.executable, "-m", "hybrid_pose.cli", "predict", str(img), "--checkpoint", str(tmp_path / "ev"),
                        "--out", str(tmp_path / "pred")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "not photographs" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_heatmap_input_pretrains_2d_and_a_run_starts_from_it(data_root, tmp_path):
    """The CPU recipe: the heat-map term alone trains the encoder's 2D head (it falls); a run with `init_from` starts
    from exactly those weights, says so in its provenance, and a network of another input is refused in one line."""
    from hybrid_pose.base import UsageError
    pre = small(data_root, tmp_path / "pre", input="rgb_heatmaps", losses="hm", prior="none", batch_size=8, augment=False,
                max_steps=30, gen_lr=3e-3, ckpt_every=0)
    tr = train(pre)
    first, last = tr.history[0]["hm"], tr.history[-1]["hm"]
    assert last < 0.8 * first, (first, last)
    assert math.isnan(tr.history[-1]["kpr"]) or tr.history[-1]["kpr"] > 0           # logged beside it, not trained
    ck = Checkpoint.load(tmp_path / "pre")
    fine = Trainer(small(data_root, tmp_path / "fine", input="rgb_heatmaps", losses="kpr3d+hm", prior="none",
                         init_from=str(tmp_path / "pre")))
    for k, v in ck["model"].items(): torch.testing.assert_close(fine.net.state_dict()[k], v, rtol=0, atol=0)
    assert "init_from" in fine.net.weights and ck["digest"][:12] in fine.net.weights
    fine.fit()
    assert Checkpoint.load(tmp_path / "fine")["weights"] == fine.net.weights       # the provenance travels with the weights
    with pytest.raises(UsageError, match="input='rgb_heatmaps'.*input='evidence'"):
        Trainer(small(data_root, tmp_path / "ev", input="evidence", losses="kpr", prior="none", init_from=str(tmp_path / "pre")))
    with pytest.raises(UsageError, match="init_from.*does not exist"):
        Trainer(small(data_root, tmp_path / "ev2", losses="kpr", prior="none", init_from=str(tmp_path / "nowhere.pt")))


def test_cosine_schedule_is_a_function_of_the_step(data_root, tmp_path):
    """lr_schedule='cosine': gen_lr at the first update, half way at the middle, 0 after the last; the run applies it."""
    from hybrid_pose.train import lr_at
    cfg = small(data_root, tmp_path / "c", lr_schedule="cosine", gen_lr=1e-3, max_steps=4, losses="kpr", prior="none")
    assert lr_at(cfg, 0, 4) == 1e-3 and abs(lr_at(cfg, 2, 4) - 5e-4) < 1e-12 and abs(lr_at(cfg, 4, 4)) < 1e-18
    assert lr_at(small(data_root, tmp_path / "k"), 3, 4) == small(data_root, tmp_path / "k").gen_lr     # constant: the paper
    tr = train(cfg)
    assert tr.opt_g.param_groups[0]["lr"] == lr_at(cfg, 3, 4)
    with pytest.raises(ValueError, match="lr_schedule"):
        small(data_root, tmp_path / "x", lr_schedule="step")


@pytest.mark.parametrize("losses, prior", [("kpr3d", "none"), ("kpr", "critic")])
def test_joints_only_step_equals_the_full_mesh_step(data_root, tmp_path, losses, prior):
    """A run whose terms read no mesh poses through `LSPJointsLayer`: the same loss and gradients as the whole body model."""
    from hybrid_pose.data import collate_skip_none
    tr = Trainer(small(data_root, tmp_path / "run", losses=losses, prior=prior, batch_size=4, dropout=0.0))
    assert tr.joints_layer is not None and not tr.objective.reads_mesh
    batch = collate_skip_none([tr.train_set[i] for i in range(4)])
    grads = []
    for log_all in (False, True):                    # False: joints only; True (a logged step): the whole mesh
        tr.net.zero_grad(set_to_none=True)
        loss, terms, _, d = tr.generator_terms(batch, log_all=log_all)
        assert (d.vertices_px is None) == (not log_all)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in tr.net.parameters() if p.grad is not None]))
    (l0, g0), (l1, g1) = grads
    torch.testing.assert_close(l0, l1, rtol=1e-5, atol=1e-6)
    f0, f1 = torch.cat([g.flatten() for g in g0]), torch.cat([g.flatten() for g in g1])
    assert ((f0 - f1).norm() / f1.norm()).item() < 1e-4        # float32 rounding through the ResNet, not a different path
    assert Trainer(small(data_root, tmp_path / "mr", losses="both", prior="none")).joints_layer is None
