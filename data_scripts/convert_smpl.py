#!/usr/bin/env python
"""Convert the official SMPL model `.pkl` into the clean `.npz` that hybrid_pose and smplx read.

    python data_scripts/convert_smpl.py PATH/TO/basicModel_neutral_lbs_10_207_0_v1.0.0.pkl --out data/smpl/SMPL_NEUTRAL.npz

No chumpy and no Python 2 are needed, and the pickle is read with a restricted unpickler that refuses anything but
arrays (a pickle can run code when loaded). The work is done by `hybrid_pose.smpl_file.convert_smpl`; see
`nbs/00a_smpl_file.ipynb` for what is checked and why.

Exit status: 0 written, 1 file refused or inconsistent, 2 input file missing.
"""
import argparse
import pickle
import sys
from pathlib import Path

try:
    from hybrid_pose import smpl_file
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hybrid_pose import smpl_file

import numpy as np

DEFAULT_OUT = Path('data/smpl/SMPL_NEUTRAL.npz')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='convert_smpl.py',
        description="Convert an official SMPL model .pkl (e.g. SMPLify's basicModel_neutral_lbs_10_207_0_v1.0.0.pkl, "
                    "or HMR's neutral_smpl_with_cocoplus_reg.pkl) into a clean .npz in SMPL's array layout "
                    "(v_template, shapedirs, posedirs, J_regressor, weights, kintree_table, f [, cocoplus_regressor]).",
        epilog="Where to get the model file:\n" + smpl_file.SMPL_DOWNLOAD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('pkl', type=Path, help='the official SMPL model .pkl')
    p.add_argument('--out', type=Path, default=DEFAULT_OUT, help=f'the .npz to write (default: {DEFAULT_OUT})')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out = smpl_file.convert_smpl(args.pkl, args.out)
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except (pickle.UnpicklingError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    with np.load(out, allow_pickle=False) as z:
        V, _, K = z['shapedirs'].shape
        F = z['f'].shape[0]
        coco = 'cocoplus_regressor' in z.files
    print(f'wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) from {args.pkl}')
    print(f'  V = {V} vertices, F = {F} faces, K = {K} shape components (betas), {smpl_file.SMPL_NUM_JOINTS} joints')
    print('  cocoplus_regressor: ' + ('present (19 joints: LSP-14 + nose, eyes, ears; from HMR\'s file)' if coco else
                                      "absent (HMR's neutral_smpl_with_cocoplus_reg.pkl has it; not needed otherwise)"))
    return 0


if __name__ == '__main__':
    sys.exit(main())
