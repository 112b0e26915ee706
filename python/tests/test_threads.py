"""Threads from Python: the pool's size (validated), the per-thread cap, the
environment variable, and bit-identical results of the public wrappers at every
thread count, also with several Python threads calling at once while the count
changes."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError


@pytest.fixture(autouse=True)
def restore_threads():
    before = tokenroute.get_num_threads()
    yield
    tokenroute.set_num_threads(before)
    tokenroute.set_thread_num_threads(None)


def status(f):
    with pytest.raises(TokenrouteError) as e:
        f()
    return e.value.name


def test_counts_are_validated():
    assert tokenroute.get_num_threads() >= 1
    for bad in (0, 1025, -1, "many"):
        assert status(lambda: tokenroute.set_num_threads(bad)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.set_thread_num_threads(5000)) == "TKR_STATUS_INVALID_ARGUMENT"
    tokenroute.set_num_threads(3)
    assert tokenroute.get_num_threads() == 3
    tokenroute.set_num_threads("auto")
    assert tokenroute.get_num_threads() == min(tokenroute.available_cores(), 1024)
    tokenroute.set_num_threads(1)
    assert tokenroute.get_num_threads() == 1


def test_thread_cap_grows_the_pool_and_restores_the_threads_cap():
    from tokenroute.threads import get_thread_num_threads, thread_cap

    tokenroute.set_num_threads(1)
    assert get_thread_num_threads() == 0
    with thread_cap(3):
        assert tokenroute.get_num_threads() == 3 and get_thread_num_threads() == 3
    assert get_thread_num_threads() == 0 and tokenroute.get_num_threads() == 3
    tokenroute.set_thread_num_threads(2)
    with pytest.raises(RuntimeError):
        with thread_cap(1):
            assert get_thread_num_threads() == 1
            raise RuntimeError
    assert get_thread_num_threads() == 2
    tokenroute.set_thread_num_threads(None)
    assert get_thread_num_threads() == 0


def workload(seed=0):
    """Outputs of every family's wrappers on shapes large enough to split."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((3000, 256), dtype=np.float32)
    w = rng.standard_normal((8, 256), dtype=np.float32) * 0.05
    s = tokenroute.score(h, w)
    row = rng.standard_normal(300_001).astype(np.float32)
    top = tokenroute.topk(row, 64)
    idx, counts = tokenroute.threshold(row[None, :], 1.0)
    g = tokenroute.gather_rows(h, np.arange(2999, -1, -3, dtype=np.uint32))
    q = rng.standard_normal((1, 8, 64), dtype=np.float32)
    k = rng.standard_normal((3000, 2, 64), dtype=np.float32)
    v = rng.standard_normal((3000, 2, 64), dtype=np.float32)
    out, lse, _ = tokenroute.attention(q, k, v, return_lse=True)
    qp = rng.standard_normal((200, 8, 64), dtype=np.float32)
    outp = tokenroute.attention(qp, k[:300], v[:300])
    return [s, top, idx[0, : counts[0]], g, out, lse, outp]


def same(a, b):
    return all(x.shape == y.shape and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def test_results_do_not_depend_on_the_thread_count():
    tokenroute.set_num_threads(1)
    want = workload()
    for n in (2, 3, 7, 1):
        tokenroute.set_num_threads(n)
        assert same(workload(), want), f"{n} threads"
    tokenroute.set_num_threads(4)
    tokenroute.set_thread_num_threads(1)
    assert same(workload(), want)


def test_concurrent_python_threads_while_the_count_changes():
    tokenroute.set_num_threads(1)
    want = workload(1)
    errors = []
    stop = threading.Event()

    def caller():
        try:
            while not stop.is_set():
                assert same(workload(1), want)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    for n in (2, 7, 1, 3, 2, 5) * 2:
        tokenroute.set_num_threads(n)
        threading.Event().wait(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_environment_variable_sets_the_initial_count():
    def run(value):
        env = dict(os.environ, TOKENROUTE_NUM_THREADS=value)
        r = subprocess.run(
            [sys.executable, "-c", "import tokenroute; print(tokenroute.get_num_threads())"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert r.returncode == 0, r.stderr
        return int(r.stdout)

    assert run("3") == 3
    assert run("auto") == min(tokenroute.available_cores(), 1024)
    # Invalid values leave the default, one thread.
    assert run("0") == 1
    assert run("lots") == 1
