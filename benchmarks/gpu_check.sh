#!/usr/bin/env bash
# One prepared check for a machine with a GPU and no network: the CUDA tests (pytest -m cuda), the notebooks' `#| cuda`
# cells, and the GPU benchmark (benchmarks/gpu.py). Results go under $OUT if set (else $TMPDIR/hybrid_pose_gpu_check).
# Without CUDA it says so and runs a small CPU dry run of the same steps (the CUDA tests are then skipped).
#
#     bash benchmarks/gpu_check.sh            # from anywhere; uses the active Python environment
#
# Order: CUDA tests, benchmark, then the notebooks with CUDA cells (the longest part; run last so that a short device
# lease still gets the numbers). The exit status is that of the first step that failed.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-${TMPDIR:-/tmp}/hybrid_pose_gpu_check}
mkdir -p "$out"
status=0
step() {  # step NAME COMMAND...: run, keep its output in $out/NAME.txt, remember the first failure
    local name=$1; shift
    echo "== $name: $*"
    local t0=$SECONDS
    "$@" > "$out/$name.txt" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.txt"
    echo "== $name: exit $rc, $((SECONDS - t0)) s"
    if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    cuda=1
    step env bash -c "nvidia-smi; python -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'"
else
    cuda=0
    echo "no CUDA: a CPU dry run (the CUDA tests are skipped, the benchmark runs small on the CPU)" | tee "$out/no_cuda.txt"
fi

step pytest_cuda python -m pytest -m cuda -q -p no:cacheprovider tests/
[ "$status" -eq 5 ] && status=0          # pytest's 5: nothing selected, not a failure here
if [ "$cuda" -eq 1 ]; then
    step bench_gpu python benchmarks/gpu.py --device cuda --out "$out"
    for nb in $(grep -l '"#| cuda' nbs/[0-9]*.ipynb); do           # the notebooks with CUDA cells, whole
        step "nbdev_cuda_$(basename "$nb" .ipynb)" nbdev-test --flags cuda "$nb"
    done
else
    step bench_gpu python benchmarks/gpu.py --device cpu --batches 2 --vertices 690 --repeat 1 --out "$out"
fi
echo "results in $out (exit $status)"
exit "$status"
