"""Per-subject work mapped by the configurable task runner: local pool and a local Dask cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from dh.errors import DHError
from flows.pipeline import build_lung_model_on, fit_lung_subject, lung_split
from flows.runners import RunnerConfig, map_subjects, runner_config

FAST_FIT = {"multi_start": False, "refine": False, "max_points": 800, "iterations": 5}


@pytest.fixture(scope="module")
def lung_model(raw_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """A lung shape model built on all but 2 subjects, and those 2 held-out subject ids."""
    train, held_out = lung_split(raw_data, 2)
    path = build_lung_model_on(train, raw_data, tmp_path_factory.mktemp("lungs") / "lungs.npz")
    return str(path), held_out


def test_config_from_env_and_params(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DH_TASK_RUNNER", "DH_TASK_WORKERS", "DH_DASK_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    assert runner_config().kind == "thread"
    monkeypatch.setenv("DH_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    cfg = runner_config()
    assert (cfg.kind, cfg.dask_address) == ("dask", "tcp://127.0.0.1:8786")
    monkeypatch.setenv("DH_TASK_RUNNER", "cluster")
    monkeypatch.delenv("DH_DASK_ADDRESS")
    with pytest.raises(DHError, match="thread, process or dask"):
        runner_config()
    with pytest.raises(DHError, match="positive integer"):
        runner_config(kind="thread", max_workers=0)


@pytest.mark.slow
def test_lung_fits_identical_on_dask_and_default(
    raw_data: Path, lung_model: tuple[str, list[str]]
) -> None:
    from distributed import LocalCluster

    model_file, held_out = lung_model
    kwargs = {"model_file": model_file, "raw_dir": str(raw_data), "options": FAST_FIT}
    local = map_subjects(fit_lung_subject, held_out, config=RunnerConfig("thread", 2), **kwargs)
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        on_dask = map_subjects(
            fit_lung_subject,
            held_out,
            config=RunnerConfig("dask", 1, cluster.scheduler_address),
            **kwargs,
        )

    assert [f.subject_id for f in local] == held_out  # input order is kept
    assert [f.subject_id for f in on_dask] == held_out
    for a, b in zip(local, on_dask, strict=True):
        assert a.coeffs == b.coeffs
        assert a.vertex_error_mm == b.vertex_error_mm
        # a held-out fit lies on the subject's surface to a few mm
        assert 0.0 < a.residual_mean_mm < 3.0
        assert a.vertex_error_mm > 0.0
