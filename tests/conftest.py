"""Shared pytest setup: the repository root on sys.path (so tests run from a plain clone too) and small fixtures."""
import os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # two cores in CI: no thread oversubscription between processes
