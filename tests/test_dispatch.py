"""MYELIN_CPU forces a dispatch path at import (a bad or unsupported one is a clear error);
MYELIN_NUM_THREADS and OMP_NUM_THREADS set the thread count."""

import os
import subprocess
import sys

import pytest

from myelin import _config

PATHS = ["baseline", "avx2", "avx512"]


def _import(cpu, code="import myelin"):
    env = {**os.environ, "MYELIN_CPU": cpu}
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_bogus_path_fails_clearly():
    r = _import("bogus")
    assert r.returncode != 0
    assert "MYELIN_CPU" in r.stderr and "bogus" in r.stderr, r.stderr


@pytest.mark.parametrize("path", PATHS)
def test_forced_path(path):
    r = _import(path, "import myelin._config as c; print(c.current_isa())")
    if path in _config.available_isas():
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == path
    else:  # this CPU lacks the path: the import must fail and say why
        assert r.returncode != 0
        assert "MYELIN_CPU" in r.stderr and path in r.stderr, r.stderr


def test_baseline_always_available():
    assert "baseline" in _config.available_isas()
    r = _import("baseline", "import myelin._config as c; print(c.current_isa())")
    assert r.returncode == 0 and r.stdout.strip() == "baseline", r.stderr


def _threads_in_child(**env_vars):
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MYELIN_NUM_THREADS")
    }
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, "-c", "import myelin; print(myelin.get_num_threads())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("var", ["MYELIN_NUM_THREADS", "OMP_NUM_THREADS"])
def test_thread_count_from_environment(var):
    r = _threads_in_child(**{var: "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_bad_thread_count_in_environment_fails_clearly():
    r = _threads_in_child(MYELIN_NUM_THREADS="zero")
    assert r.returncode != 0
    assert "MYELIN_NUM_THREADS" in r.stderr and "zero" in r.stderr, r.stderr
