"""``local_ray``: one local Ray (2 CPUs, loopback, no dashboard, token auth off) for the whole test session.

Starting Ray and its first workers (each imports torch) takes 20-40 s on the shared 2-core machine, so the tests
that take this fixture are marked slow; they skip, naming the extra, when Ray is not installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="Ray is the extra finmlops[distributed]")
    from finmlops.executor import RayConfig, ray_init_kwargs

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway local Ray: no token file in the home folder
    ray.init(**ray_init_kwargs(RayConfig(num_cpus=2)))
    yield
    ray.shutdown()
    mp.undo()
