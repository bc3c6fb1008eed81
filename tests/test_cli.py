"""The `hybrid-pose` command as a user runs it: the installed script and `python -m` entry points in fresh processes.
The notebook (nbs/14_cli.ipynb) checks the parser, the one-line config errors and a run in-process; here is what only
a subprocess shows: help without PyTorch, the README's workflow end to end with no extra flags, exit statuses,
`python -m hybrid_pose.train` (also under torchrun) and `python -m hybrid_pose.synthetic` as the same parser."""
import json, os, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1")
SCRIPT = Path(sys.executable).parent / "hybrid-pose"


def sh(*args, timeout=600, cwd=None):
    return subprocess.run([str(a) for a in args], cwd=cwd or ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def one_line_error(res, *needles):
    "Exit status 2, no traceback, and a single `...: error: ...` line naming the problem."
    assert res.returncode == 2, (res.returncode, res.stdout[-500:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr
    lines = [l for l in res.stderr.splitlines() if ": error: " in l]
    assert len(lines) == 1, res.stderr
    for n in needles: assert n in lines[0], (n, lines[0])


def test_help_does_not_load_torch():
    "`hybrid-pose --help` imports no PyTorch (the commands import what they need when they run)."
    code = ("import sys; from hybrid_pose.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy', 'smplx')))")
    res = sh(sys.executable, "-c", code)
    assert res.returncode == 0 and res.stdout.strip() == "[]", (res.stdout, res.stderr)
    assert SCRIPT.is_file(), f"{SCRIPT} missing: `pip install -e .` installs the hybrid-pose command ([project.scripts])"
    t = time.perf_counter(); res = sh(SCRIPT, "--help"); dt = time.perf_counter() - t
    print(f"hybrid-pose --help: {dt:.2f} s")
    assert res.returncode == 0, res.stderr
    for cmd in ("synth", "train", "evaluate", "predict", "export", "exit status"): assert cmd in res.stdout


HELP = {
    "synth": ["--n", "--out", "--seed", "--start", "--overwrite", "--no-progress", "LSP"],
    "train": ["--config", "--profile", "--set", "KEY=VALUE", "--fresh", "checkpoint.pt", ".toml", "exit status"],
    "evaluate": ["RUN", "--checkpoint", "--data-root", "--dataset", "--split", "--out", "--device", "--batch-size", "--workers",
                 "--body-model", "--no-baselines", "--no-progress", "CSV"],
    "predict": ["IMAGE", "--checkpoint", "--bbox", "--bbox-scale", "--out", "--format", "--mesh-frame", "--device",
                "--body-model", "--batch-size", "--no-progress", "_overlay.png", ".json", "untrained", "folder"],
    "export": ["RUN", "--out", "weights.pt"],
}


@pytest.mark.parametrize("cmd", sorted(HELP))
def test_subcommand_help(cmd, capsys):
    "Each command's --help names every option and says what the command writes."
    from hybrid_pose.cli import main
    with pytest.raises(SystemExit) as e: main([cmd, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())          # argparse wraps lines
    for needle in HELP[cmd]: assert needle in out, (cmd, needle)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    "A folder with synthetic people in data/synthetic, made by `hybrid-pose synth`."
    d = tmp_path_factory.mktemp("cli")
    res = sh(SCRIPT, "synth", "--n", 12, "--out", d / "data/synthetic", "--no-progress")
    assert res.returncode == 0 and "made 12" in res.stdout, res.stderr
    return d


def small_run(workdir, name, *more):
    "The README's quick config, made tiny: `hybrid-pose train --config configs/quick.toml --set ...` in `workdir`."
    return ["train", "--config", ROOT / "configs/quick.toml", "--set", "img_size=64", "batch_size=4", "max_steps=4",
            "log_every=2", "ckpt_every=2", "progress=false", f"out_dir={workdir / name}", *more]


def test_readme_workflow_needs_no_extra_flags(workdir):
    "train -> evaluate RUN -> predict --checkpoint RUN -> export RUN -> predict with the export: nothing else given."
    res = sh(SCRIPT, *small_run(workdir, "run"), cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "finished 4 steps" in res.stdout and "hybrid-pose evaluate" in res.stdout
    cfg = json.loads((workdir / "run/config.json").read_text())
    assert (cfg["backbone"], cfg["dataset"], cfg["max_steps"]) == ("resnet18", "synthetic", 4)     # profile + file + --set
    res = sh(SCRIPT, "evaluate", workdir / "run", "--workers", 0, "--no-progress", cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "synthetic/val" in res.stderr and "|" in res.stdout
    assert "| this run |" in res.stdout and "| oracle: T-pose, camera fitted to the true 2D keypoints |" in res.stdout     # never a 3D number alone
    img = workdir / "data/synthetic/images/im0001.jpg"
    res = sh(SCRIPT, "predict", img, "--checkpoint", workdir / "run", "--out", workdir / "pred", "--no-progress", cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((workdir / "pred/im0001.json").read_text())
    assert meta["checkpoint"] and "4 steps" in json.dumps(meta)
    res = sh(SCRIPT, "export", workdir / "run", cwd=workdir)
    assert res.returncode == 0, res.stderr
    w, c = workdir / "run/weights.pt", workdir / "run/checkpoint.pt"
    assert w.stat().st_size * 2 < c.stat().st_size, (w.stat().st_size, c.stat().st_size)
    res = sh(SCRIPT, "predict", img, "--checkpoint", w, "--out", workdir / "pred_w", "--no-progress", cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = (json.loads((workdir / p / "im0001.json").read_text())["theta"] for p in ("pred", "pred_w"))
    assert a == b                                                  # the export predicts exactly what the run does


def test_exit_statuses(workdir):
    "0 finished, 4 nothing to do (and nothing rewritten), 2 another config, 3 time budget, 1 non-finite losses."
    args = small_run(workdir, "exits", "prior=none")
    assert sh(SCRIPT, *args, cwd=workdir).returncode == 0
    files = {p.name: p.read_bytes() for p in (workdir / "exits").iterdir() if p.is_file()}
    res = sh(SCRIPT, *args, cwd=workdir)
    assert res.returncode == 4 and "nothing to do" in res.stdout, (res.returncode, res.stdout, res.stderr[-2000:])
    assert {p.name: p.read_bytes() for p in (workdir / "exits").iterdir() if p.is_file()} == files
    one_line_error(sh(SCRIPT, *args, "gen_lr=0.5", "augment=false", cwd=workdir), "augment True -> False", "gen_lr 0.001 -> 0.5", "--fresh")
    assert {p.name: p.read_bytes() for p in (workdir / "exits").iterdir() if p.is_file()} == files
    res = sh(SCRIPT, *small_run(workdir, "budget", "prior=none", "max_steps=1000", "time_budget_s=0.01"), cwd=workdir)
    assert res.returncode == 3 and "time budget" in res.stdout, (res.returncode, res.stdout, res.stderr[-2000:])
    res = sh(SCRIPT, *small_run(workdir, "nan", "prior=none", "gen_lr=1e30", "nan_patience=1", "max_steps=20"), cwd=workdir)
    assert res.returncode == 1 and "non-finite" in res.stdout, (res.returncode, res.stdout, res.stderr[-2000:])


def test_python_m_entry_points_share_the_parser(workdir):
    "`python -m hybrid_pose.train` is `hybrid-pose train` (multi-valued --set, --fresh, one-line errors); same for synth."
    res = sh(sys.executable, "-m", "hybrid_pose.train", *small_run(workdir, "pym", "prior=none")[1:], cwd=workdir)
    assert res.returncode == 0 and "finished 4 steps" in res.stdout, res.stderr[-3000:]
    res = sh(sys.executable, "-m", "hybrid_pose.train", *small_run(workdir, "pym", "prior=none", "max_steps=6")[1:], "--fresh", cwd=workdir)
    assert res.returncode == 0 and "finished 6 steps" in res.stdout, res.stderr[-3000:]
    one_line_error(sh(sys.executable, "-m", "hybrid_pose.train", "--set", "losses=all", "max_steps=1"), "losses", "'all'")
    one_line_error(sh(sys.executable, "-m", "hybrid_pose.synthetic", "--n", 2, "--out", workdir / "s", "--start", 0), "--start")


def test_torchrun_trains_through_the_same_command(workdir):
    "DDP from the command line: 2 gloo processes, one result line, one checkpoint."
    res = sh(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 2, "-m", "hybrid_pose.train",
             *small_run(workdir, "ddp", "prior=none", "device=cpu", "max_steps=2")[1:], cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("hybrid-pose train: finished 2 steps") == 1, res.stdout
    assert (workdir / "ddp/checkpoint.pt").is_file()


@pytest.fixture(scope="module")
def weights(workdir):
    "A weights file for the synthetic data of `workdir` (an untrained network, 64 px): what evaluate and predict read."
    from hybrid_pose.checkpoint import save_network
    from hybrid_pose.predict import untrained_network
    return save_network(untrained_network(), workdir / "w" / "weights.pt", body="open",
                        config=dict(img_size=64, dataset="synthetic", data_root=str(workdir / "data")))


def test_unusable_outputs_devices_and_body_models_are_one_line_before_any_work(workdir, weights):
    "What a new user tries: outputs that cannot be written, a misspelt --body-model, a device this machine lacks."
    import torch
    (workdir / "a_file").write_text("x")
    bad = workdir / "a_file" / "sub"                                     # cannot be made: its parent is a file
    img = workdir / "data/synthetic/images/im0001.jpg"
    one_line_error(sh(SCRIPT, "synth", "--n", 1, "--out", bad, "--no-progress"), "--out", str(bad))
    one_line_error(sh(SCRIPT, "export", weights.parent, "--out", bad / "w.pt"), "--out")
    res = sh(SCRIPT, "evaluate", weights, "--out", bad / "t.csv", "--workers", 0, "--no-progress")
    one_line_error(res, "--out"); assert res.stdout == ""                # refused before anything was computed
    one_line_error(sh(SCRIPT, "evaluate", weights, "--out", workdir, "--no-progress"), "is a folder")
    one_line_error(sh(SCRIPT, "predict", img, "--checkpoint", weights, "--out", bad), "output folder")
    for cmd in (["predict", img, "--checkpoint", weights, "--out", workdir / "p"], ["evaluate", weights, "--no-progress"]):
        one_line_error(sh(SCRIPT, *cmd, "--body-model", "opne"), "'opne'", "'open', 'smpl', 'auto'")   # train's message
        one_line_error(sh(SCRIPT, *cmd, "--device", "gpu"), "'gpu' is not a device")
        if not torch.cuda.is_available():
            one_line_error(sh(SCRIPT, *cmd, "--device", "cuda"), "CUDA is not available")
    assert not (workdir / "p").exists()


def test_export_in_place_into_an_unwritable_run_is_one_line(workdir, weights, tmp_path):
    "`export RUN` writes RUN/weights.pt: a run folder that cannot take it is one line, and nothing is read first."
    import shutil
    run = tmp_path / "run"; run.mkdir()
    shutil.copy(weights, run / "checkpoint.pt")
    (run / "weights.pt").mkdir()                                          # in the way: not a file that can be replaced
    one_line_error(sh(SCRIPT, "export", run), "run folder", "is a folder")
    if os.geteuid() != 0:                                                 # permissions mean nothing to root
        os.chmod(run, 0o500)
        try: one_line_error(sh(SCRIPT, "export", run / "checkpoint.pt"), "run folder", "--out")
        finally: os.chmod(run, 0o700)


def test_cli_imports_only_the_bottom_layer():
    "The command line sits on top: importing it loads hybrid_pose.base and nothing else of the package; no module imports it."
    res = sh(sys.executable, "-c", "import sys, hybrid_pose.cli; print(sorted(m for m in sys.modules if m.startswith('hybrid_pose.')))")
    assert res.returncode == 0 and res.stdout.strip() == "['hybrid_pose.base', 'hybrid_pose.cli']", (res.stdout, res.stderr)
    import re
    for name in ("evaluate", "predict", "checkpoint", "synthetic", "datacheck"):   # (train and viz: their owners)
        p = ROOT / "hybrid_pose" / f"{name}.py"
        body = p.read_text().split('if __name__ == "__main__"')[0]        # a script entry point may hand over to the parser
        assert not re.search(r"(from \.cli|from hybrid_pose\.cli|import hybrid_pose\.cli|from \. import cli)", body), p.name


def test_synth_n0_repairs_a_damaged_joints_mat(workdir, tmp_path):
    "The advice for a broken synthetic joints.mat: `hybrid-pose synth --n 0 --out FOLDER` rebuilds it from the images' records."
    import shutil
    d = shutil.copytree(workdir / "data/synthetic", tmp_path / "synthetic")
    good = (d / "joints.mat").read_bytes()
    (d / "joints.mat").write_bytes(b"broken")
    res = sh(SCRIPT, "synth", "--n", 0, "--out", d, "--seed", 5, "--no-progress")
    assert res.returncode == 0 and "made 0" in res.stdout and "holds 12 images" in res.stdout, res.stderr
    assert (d / "joints.mat").read_bytes() == good
