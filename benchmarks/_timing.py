"""What the benchmarks share: a median timer that synchronises the device around each call."""
import statistics, time


def timeit(fn, repeat, sync, warmup=2):
    "Median wall time of `fn()` in milliseconds over `repeat` calls, after `warmup` untimed ones; `sync()` waits for the device."
    for _ in range(warmup): fn()
    sync(); ts = []
    for _ in range(repeat):
        t = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000
