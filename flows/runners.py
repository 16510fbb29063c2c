"""Task runners for per-subject work (meshing, correspondence, fits): local or a Dask cluster.

The runner comes from the `pipeline.runner` section of `params.yaml`, overridden by the
environment, so the same flow runs on a laptop or on an existing cluster:

- `DH_TASK_RUNNER`: `thread` (default), `process` or `dask`;
- `DH_TASK_WORKERS`: worker count for the local pools;
- `DH_DASK_ADDRESS`: scheduler address of an existing Dask cluster (e.g. `tcp://10.0.0.5:8786`);
  setting it implies `dask`. Without an address, `dask` starts a temporary local cluster.

:func:`map_subjects` runs one Prefect flow, `map_subjects`, whose task runner is that runner,
and maps a function over subjects; the results come back in the input order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dh.config import apply_env_defaults, load_params
from dh.errors import fail

logger = logging.getLogger(__name__)

KINDS = ("thread", "process", "dask")
ENV_KIND = "DH_TASK_RUNNER"
ENV_WORKERS = "DH_TASK_WORKERS"
ENV_ADDRESS = "DH_DASK_ADDRESS"


@dataclass
class RunnerConfig:
    """Which task runner maps per-subject work.

    Attributes:
        kind: `thread`, `process` or `dask`.
        max_workers: worker count of the local pools (and of a temporary local Dask cluster).
        dask_address: scheduler address of an existing Dask cluster ("" for none).
    """

    kind: str = "thread"
    max_workers: int = 2
    dask_address: str = ""

    def describe(self) -> str:
        """A short text for logs and the report, e.g. `dask @ tcp://127.0.0.1:8786`."""
        if self.kind == "dask":
            return f"dask @ {self.dask_address or 'temporary local cluster'}"
        return f"{self.kind} pool, {self.max_workers} workers"


def runner_config(**overrides: Any) -> RunnerConfig:
    """The runner configuration: params.yaml `pipeline.runner`, then env, then `overrides`.

    Raises:
        DHError: an unknown runner kind or a non-positive worker count.
    """
    try:
        section = dict(load_params("pipeline").get("runner") or {})
    except KeyError:
        section = {}
    cfg = {
        "kind": section.get("kind", "thread"),
        "max_workers": section.get("max_workers", 2),
        "dask_address": section.get("dask_address") or "",
    }
    if os.environ.get(ENV_KIND):
        cfg["kind"] = os.environ[ENV_KIND]
    if os.environ.get(ENV_WORKERS):
        cfg["max_workers"] = os.environ[ENV_WORKERS]
    if os.environ.get(ENV_ADDRESS):
        cfg["dask_address"] = os.environ[ENV_ADDRESS]
        cfg["kind"] = "dask"
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    if cfg["dask_address"] and "kind" not in overrides:
        cfg["kind"] = "dask"

    kind = str(cfg["kind"]).lower()
    if kind not in KINDS:
        fail(
            "params.yaml",
            "pipeline.runner.kind",
            kind,
            f"one of {KINDS}",
            f"set pipeline.runner.kind or ${ENV_KIND} to thread, process or dask",
        )
    try:
        workers = int(cfg["max_workers"])
    except (TypeError, ValueError):
        workers = 0
    if workers < 1:
        fail(
            "params.yaml",
            "pipeline.runner.max_workers",
            cfg["max_workers"],
            "a positive integer",
            f"set pipeline.runner.max_workers or ${ENV_WORKERS}",
        )
    return RunnerConfig(kind, workers, str(cfg["dask_address"] or ""))


def make_task_runner(config: RunnerConfig | None = None) -> Any:
    """A Prefect task runner for `config` (default :func:`runner_config`)."""
    config = config or runner_config()
    if config.kind == "dask":
        from prefect_dask import DaskTaskRunner

        if config.dask_address:
            return DaskTaskRunner(address=config.dask_address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": config.max_workers,
                "threads_per_worker": 1,
                "processes": False,
                "dashboard_address": None,
            }
        )
    if config.kind == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=config.max_workers)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=config.max_workers)


def map_subjects(
    fn: Callable[..., Any],
    items: Sequence[Any],
    *,
    config: RunnerConfig | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> list[Any]:
    """`[fn(item, **kwargs) for item in items]`, each call a Prefect task on the task runner.

    Runs as the Prefect flow `map_subjects` (a subflow when called inside a flow). `fn` must be
    a module-level function (Dask and process pools pickle it); `kwargs` are passed unmapped to
    every call.

    Args:
        fn: the per-subject work.
        items: one entry per subject (ids, paths or small arrays).
        config: the runner (default :func:`runner_config`).
        name: task name shown in Prefect (default `fn.__name__`).
        **kwargs: constant arguments.

    Returns:
        The results, in the order of `items`.
    """
    from prefect import flow, task, unmapped
    from prefect.cache_policies import NO_CACHE

    apply_env_defaults()
    config = config or runner_config()
    per_subject = task(fn, name=name or fn.__name__, cache_policy=NO_CACHE)

    @flow(name="map_subjects", task_runner=make_task_runner(config), validate_parameters=False)
    def map_flow(items: list[Any]) -> list[Any]:
        futures = per_subject.map(items, **{k: unmapped(v) for k, v in kwargs.items()})
        return [f.result() for f in futures]

    logger.info("mapping %s over %d subject(s) on %s", fn.__name__, len(items), config.describe())
    return map_flow(list(items))
