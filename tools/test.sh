#!/usr/bin/env bash
# The project's test command (README, CI). Run from anywhere inside the repository, in the environment where
# `pip install -e ".[dev]"` was run.
#   1. notebooks are clean      (nbdev-clean changes nothing)
#   2. the package is in sync   (nbdev-export changes nothing in hybrid_pose/)
#   3. pytest: every component notebook through nbdev's test runner, the papermill experiment smoke runs,
#      and the tests in tests/.  Extra arguments go to pytest (e.g. `-m slow`, `-k body`).
set -euo pipefail
cd "$(git rev-parse --show-toplevel 2>/dev/null || dirname "$(dirname "$(readlink -f "$0")")")"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" PYTHONHASHSEED=0
[ -z "${IN_TEST:-}" ] || { echo "IN_TEST is set: nbdev-export would do nothing and the sync check would pass vacuously; unset it." >&2; exit 2; }

digest() { find "$@" -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/_*/*' -not -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 md5sum; }
changed() { diff <(echo "$1") <(echo "$2") | sed -n 's/^> [0-9a-f]*  /  /p'; }

echo "== 1/3 notebooks clean (nbdev-clean)"
before=$(digest nbs); nbdev-clean; after=$(digest nbs)
if [ "$before" != "$after" ]; then
  echo "These notebooks were not clean; nbdev-clean has now cleaned them, review and commit:" >&2; changed "$before" "$after" >&2; exit 1
fi
echo "== 2/3 package in sync with the notebooks (nbdev-export)"
before=$(digest hybrid_pose); nbdev-export; after=$(digest hybrid_pose)
if [ "$before" != "$after" ]; then
  echo "hybrid_pose/ was out of sync with nbs/; nbdev-export has now rewritten it, review and commit:" >&2; changed "$before" "$after" >&2; exit 1
fi
echo "== 3/3 pytest (component notebooks, experiment smoke runs, tests/)"
python -m pytest "$@"
