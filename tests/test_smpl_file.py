"""SMPL .pkl reader and converter: hostile pickles refused, official-shaped pickles converted, the CLI."""
import builtins
import contextlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


@pytest.mark.parametrize('protocol', [0, 2, 4])
@pytest.mark.parametrize('attack', ['os.system', 'eval', 'subprocess.Popen'])
def test_malicious_pickle_refused(tmp_path, attack, protocol):
    flag = tmp_path / 'pwned.txt'
    pkl = tmp_path / 'SMPL_NEUTRAL.pkl'
    model = {'v_template': np.zeros((3, 3)), 'shapedirs': _attacks(flag)[attack]}
    pkl.write_bytes(pickle.dumps(model, protocol=protocol))
    with pytest.raises(pickle.UnpicklingError) as e:
        smpl_file.load_smpl_pkl(pkl)
    msg = str(e.value)
    assert str(pkl) in msg and 'not an official SMPL model file' in msg and 'refused' in msg
    with pytest.raises(pickle.UnpicklingError):
        smpl_file.convert_smpl(pkl, tmp_path / 'out.npz')
    assert not flag.exists(), f'{attack} was executed'
    assert not (tmp_path / 'out.npz').exists()


def test_official_shaped_pickle_loads_without_chumpy(tmp_path):
    pkl = tmp_path / 'basicModel_neutral_lbs_10_207_0_v1.0.0.pkl'
    orig = smpl_file.write_smpl_like_pkl(pkl, n_verts=30, cocoplus=True)
    assert 'chumpy' not in sys.modules
    assert b'chumpy.ch\nCh\n' in pkl.read_bytes() and b'scipy.sparse.csc\ncsc_matrix\n' in pkl.read_bytes()
    model = smpl_file.load_smpl_pkl(pkl)
    assert 'chumpy' not in sys.modules
    for k, v in orig.items():
        assert isinstance(model[k], np.ndarray), k
        np.testing.assert_array_equal(model[k], v)
    assert model['kintree_table'][0, 0] == smpl_file.ROOT_PARENT_SENTINEL
    assert (model['bs_style'], model['bs_type']) == ('lbs', 'lrotmin')


def test_convert_and_drive_smplx(tmp_path):
    torch = pytest.importorskip('torch')
    smplx = pytest.importorskip('smplx')
    pkl = tmp_path / 'neutral_smpl_with_cocoplus_reg.pkl'
    orig = smpl_file.write_smpl_like_pkl(pkl, n_verts=30, n_faces=40, n_betas=10, cocoplus=True, seed=3)
    out = smpl_file.convert_smpl(pkl, tmp_path / 'smpl' / 'SMPL_NEUTRAL.npz')
    assert out == tmp_path / 'smpl' / 'SMPL_NEUTRAL.npz'
    assert sorted(p.name for p in out.parent.iterdir()) == ['SMPL_NEUTRAL.npz']  # no temp file left
    with np.load(out, allow_pickle=False) as z:
        arrays = dict(z)
    expected = {'v_template': ((30, 3), np.float32), 'shapedirs': ((30, 3, 10), np.float32),
                'posedirs': ((30, 3, 207), np.float32), 'J_regressor': ((24, 30), np.float32),
                'weights': ((30, 24), np.float32), 'kintree_table': ((2, 24), np.int64), 'f': ((40, 3), np.int64),
                'cocoplus_regressor': ((19, 30), np.float32)}
    assert {k: (a.shape, a.dtype) for k, a in arrays.items()} == expected
    for k in expected:
        if k != 'kintree_table':
            np.testing.assert_allclose(arrays[k], orig[k], rtol=0, atol=1e-6, err_msg=k)
    assert arrays['kintree_table'][0].tolist() == list(smpl_file.SMPL_PARENTS)
    assert arrays['kintree_table'][0, 0] == -1

    names = ['nose', 'reye', 'leye', 'rear', 'lear', 'LBigToe', 'LSmallToe', 'LHeel', 'RBigToe', 'RSmallToe', 'RHeel',
             *(h + t for h in 'lr' for t in ('thumb', 'index', 'middle', 'ring', 'pinky'))]
    with contextlib.redirect_stdout(io.StringIO()):  # smplx warns about < 300 shape components
        body = smplx.SMPL('', data_struct=smplx.utils.Struct(**arrays), vertex_ids={n: i for i, n in enumerate(names)})
    betas = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    res = body(betas=betas, body_pose=torch.zeros(3, 69), global_orient=torch.zeros(3, 3))
    # zero pose: linear blend skinning reduces to the shaped template v_template + shapedirs . beta
    shaped = arrays['v_template'][None] + np.einsum('vck,bk->bvc', arrays['shapedirs'], betas.numpy())
    np.testing.assert_allclose(res.vertices.detach().numpy(), shaped, atol=1e-5)
    np.testing.assert_allclose(res.joints[:, :24].detach().numpy(),
                               np.einsum('jv,bvc->bjc', arrays['J_regressor'], shaped), atol=1e-5)


def test_inconsistent_model_rejected(tmp_path):
    pkl = tmp_path / 'model.pkl'
    smpl_file.write_smpl_like_pkl(pkl, n_verts=30, cocoplus=False)
    good = smpl_file.load_smpl_pkl(pkl)
    with pytest.raises(ValueError, match=r"'weights' has shape \(29, 24\), expected \(V, 24\) with V = 30"):
        smpl_file.clean_smpl_arrays({**good, 'weights': good['weights'][:-1]}, source=pkl)
    with pytest.raises(ValueError, match=r"'f' indexes vertices"):
        smpl_file.clean_smpl_arrays({**good, 'f': np.array([[0, 1, 99]])}, source=pkl)


def _run_cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
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
