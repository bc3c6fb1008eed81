"""The converter's command line (data_scripts/convert_smpl.py) in a subprocess; the reader itself is checked in nbs/00a_smpl_file."""
import builtins
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hybrid_pose import smpl_file  # noqa: E402

CLI = ROOT / 'data_scripts' / 'convert_smpl.py'


class _Evil:
    "Pickles as a call to `fn(*args)`: what a hostile model file would contain."
    def __init__(self, fn, args): self.fn, self.args = fn, args
    def __reduce__(self): return self.fn, self.args


def _attacks(flag: Path):
    return {'os.system': _Evil(os.system, (f'echo pwned > {flag}',)),
            'eval': _Evil(builtins.eval, (f"open({str(flag)!r}, 'w').write('pwned')",)),
            'subprocess.Popen': _Evil(subprocess.Popen, (['touch', str(flag)],))}


def _run_cli(*args, cwd):
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}  # this checkout's package, whatever the environment has installed
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_converts(tmp_path):
    pkl = tmp_path / 'in.pkl'
    smpl_file.write_smpl_like_pkl(pkl, n_verts=30, n_betas=10, cocoplus=True)
    r = _run_cli(pkl, '--out', tmp_path / 'smpl' / 'SMPL_NEUTRAL.npz', cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert 'V = 30 vertices' in r.stdout and 'K = 10 shape components' in r.stdout
    assert 'cocoplus_regressor: present' in r.stdout
    with np.load(tmp_path / 'smpl' / 'SMPL_NEUTRAL.npz', allow_pickle=False) as z:
        assert z['v_template'].shape == (30, 3)


def test_cli_default_out_and_no_cocoplus(tmp_path):
    smpl_file.write_smpl_like_pkl(tmp_path / 'in.pkl', cocoplus=False)
    r = _run_cli('in.pkl', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'data' / 'smpl' / 'SMPL_NEUTRAL.npz').is_file()
    assert 'cocoplus_regressor: absent' in r.stdout


def test_cli_missing_file(tmp_path):
    r = _run_cli(tmp_path / 'nope.pkl', '--out', tmp_path / 'x.npz', cwd=ROOT)
    assert r.returncode == 2
    for s in ('nope.pkl', 'https://smpl.is.tue.mpg.de', 'https://smplify.is.tue.mpg.de',
              'basicModel_neutral_lbs_10_207_0_v1.0.0.pkl',
              'python data_scripts/convert_smpl.py PATH/TO/model.pkl --out data/smpl/SMPL_NEUTRAL.npz'):
        assert s in r.stderr, s
    assert not (tmp_path / 'x.npz').exists()


def test_cli_refuses_malicious(tmp_path):
    flag = tmp_path / 'pwned.txt'
    (tmp_path / 'evil.pkl').write_bytes(pickle.dumps({'f': _attacks(flag)['os.system']}, protocol=2))
    r = _run_cli(tmp_path / 'evil.pkl', '--out', tmp_path / 'x.npz', cwd=ROOT)
    assert r.returncode == 1 and 'not an official SMPL model file' in r.stderr
    assert not flag.exists() and not (tmp_path / 'x.npz').exists()


def test_cli_help():
    r = _run_cli('--help', cwd=ROOT)
    assert r.returncode == 0
    assert 'https://smplify.is.tue.mpg.de' in r.stdout and '--out' in r.stdout


def test_cli_refuses_smpl_v1_1(tmp_path):
    smpl_file.write_smpl_like_pkl(tmp_path / 'basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl', n_betas=300, cocoplus=False)
    r = _run_cli(tmp_path / 'basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl', '--out', tmp_path / 'x.npz', cwd=ROOT)
    assert r.returncode == 1 and 'SMPL v1.1.0' in r.stderr and 'basicModel_neutral_lbs_10_207_0_v1.0.0.pkl' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / 'x.npz').exists()
