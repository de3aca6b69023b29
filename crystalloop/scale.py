"""Scale-out on Dask: the same function in-process or on a cluster, chosen by a scheduler address.

Nothing here imports Dask until a scheduler is asked for: with ``scheduler=None`` (the
default everywhere) the work runs in this process and no Dask process is started.

Scheduler addresses (the ``--scheduler`` option of ``crystalloop psd`` and ``twin fit``):

* ``None``: in-process (default);
* ``"local:N"`` (or ``"local"``: one worker per CPU core): a :class:`distributed.LocalCluster`
  with ``N`` worker processes of one thread each, started for the call and closed after it;
* ``"tcp://HOST:PORT"`` (``tls://``, ``ws://``, ``inproc://``, or a bare ``HOST:PORT``): a
  running ``dask scheduler`` with ``dask worker``s on other machines (``docs/scale-out.md``);
* a :class:`distributed.Client` or a cluster object: used as is, not closed.

:func:`map_tasks` maps a function over items (``client.map`` + ``as_completed``) and returns the
results in item order; :func:`map_simulations` is the same for simulation batches.
:func:`joblib_backend` routes every ``joblib.Parallel`` call inside it (model selection,
augmentation search, Monte Carlo CV of the twin) to the cluster through joblib's Dask backend.
Results are identical to the in-process run: each task gets its inputs (seeds included) from the
caller, never from the worker's state.

Faults: a worker that dies mid-task has its tasks re-run on the other workers by the scheduler
(up to ``distributed.scheduler.allowed-failures`` times). A scheduler that cannot be reached, or
is lost while tasks are outstanding, raises :class:`~crystalloop.errors.SchedulerError` naming
the address and how many results had arrived; results already handed to ``on_result`` (e.g.
stored in the experiment store) stay where they were put.

Examples
--------
>>> from crystalloop.scale import map_tasks
>>> map_tasks(abs, [-2, 3, -5])                     # in-process, Dask not imported
[2, 3, 5]
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from crystalloop.errors import ConfigError, CrystalloopWarning, SchedulerError

__all__ = ["parse_scheduler", "dask_client", "map_tasks", "map_simulations", "joblib_backend",
           "CONNECT_TIMEOUT_S"]

CONNECT_TIMEOUT_S = 20.0
"""How long to wait for a remote scheduler to answer before :class:`SchedulerError`."""

_LOCAL = re.compile(r"^local(?::(\d+))?$")
_ADDRESS = re.compile(r"^((tcp|tls|ws|wss|inproc|ucx)://)?[\w.\-\[\]:]+:\d+$|^inproc://\S+$")


def parse_scheduler(scheduler: Any) -> tuple[str, Any]:
    """Classify a scheduler argument.

    Parameters
    ----------
    scheduler : None, str, Client or cluster
        See the module docstring.

    Returns
    -------
    (kind, value)
        ``("inprocess", None)``, ``("local", n_workers)`` (``None``: one per core),
        ``("address", "tcp://...")`` or ``("client", obj)``.

    Raises
    ------
    ConfigError
        A string that is neither ``local[:N]`` (N >= 1) nor a scheduler address.
    """
    if scheduler is None:
        return "inprocess", None
    if not isinstance(scheduler, str):
        return "client", scheduler
    text = scheduler.strip()
    m = _LOCAL.match(text)
    if m:
        n = None if m.group(1) is None else int(m.group(1))
        if n is not None and n < 1:
            raise ConfigError(f"--scheduler local:N needs N >= 1 worker, got {scheduler!r}")
        return "local", n
    if _ADDRESS.match(text):
        return "address", text if "://" in text else f"tcp://{text}"
    raise ConfigError(f"--scheduler must be 'local:N' (a local cluster of N workers) or a Dask scheduler "
                      f"address such as 'tcp://10.0.0.5:8786', got {scheduler!r}")


@contextlib.contextmanager
def dask_client(scheduler: Any) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``scheduler`` (see :func:`parse_scheduler`), closed after use.

    Raises
    ------
    SchedulerError
        The scheduler at the address cannot be reached within :data:`CONNECT_TIMEOUT_S`.
    """
    kind, value = parse_scheduler(scheduler)
    if kind == "inprocess":
        raise ConfigError("dask_client needs a scheduler ('local:N' or an address), got None")
    from distributed import Client

    if kind == "client":
        if isinstance(value, Client):
            yield value
            return
        with Client(value) as client:  # a cluster object (LocalCluster, SLURMCluster, ...)
            yield client
        return
    if kind == "local":
        import logging

        from distributed import LocalCluster

        n = value or os.cpu_count() or 1
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(value, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError) as e:
        raise SchedulerError(f"Cannot reach the Dask scheduler at {value} within {CONNECT_TIMEOUT_S:g} s "
                             f"({type(e).__name__}: {e}); start one with `dask scheduler` and workers with "
                             f"`dask worker {value}`, or use --scheduler local:N") from None
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):  # the scheduler may already be gone
            client.close(timeout=5)


class _Quiet:
    """Raise a logger's level to CRITICAL until :meth:`restore`."""

    def __init__(self, name: str) -> None:
        import logging

        self.logger = logging.getLogger(name)
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)

    def restore(self) -> None:
        self.logger.setLevel(self.level)


def _address(client: Any) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:  # noqa: BLE001 - only for the message
        return "the scheduler"


def map_tasks(fn: Callable[..., Any], *iterables: Iterable[Any], scheduler: Any = None,
              on_result: Callable[[int, Any], None] | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[Any]:
    """``list(map(fn, *iterables))``, in-process or on a Dask cluster, results in item order.

    Parameters
    ----------
    fn : callable
        A module-level function (it travels to the workers by reference); deterministic given
        its arguments, so that the cluster run equals the in-process run.
    *iterables : iterable
        One task per item; with several iterables, task ``i`` is ``fn(a[i], b[i], ...)``
        (as :func:`map` and ``Client.map``; all must have the same length).
    scheduler : None, str, Client or cluster
        Where to run (module docstring); None: in this process, Dask not imported.
    on_result : callable, optional
        ``on_result(index, result)`` in this process as each result arrives (completion order
        on a cluster), e.g. to store it at once so that nothing finished is lost if the
        scheduler goes away later.
    progress : callable, optional
        ``progress(done, total)`` after each result.

    Returns
    -------
    list
        ``fn(*args)`` for every task, in task order.

    Raises
    ------
    SchedulerError
        The scheduler cannot be reached, or is lost while tasks are outstanding.
    Exception
        Whatever ``fn`` raised for an item (the first failure, re-raised in this process).
    """
    if not iterables:
        raise ConfigError("map_tasks needs at least one iterable of task arguments")
    columns = [list(it) for it in iterables]
    n = len(columns[0])
    if any(len(c) != n for c in columns):
        raise ConfigError(f"map_tasks: the iterables have different lengths {[len(c) for c in columns]}")
    if parse_scheduler(scheduler)[0] == "inprocess":
        out = []
        for i, args in enumerate(zip(*columns, strict=True)):
            r = fn(*args)
            out.append(r)
            if on_result is not None:
                on_result(i, r)
            if progress is not None:
                progress(i + 1, n)
        return out
    with dask_client(scheduler) as client:
        return _map_on(client, fn, columns, n, on_result, progress)


def _map_on(client: Any, fn: Callable, columns: Sequence[list], n: int, on_result, progress) -> list[Any]:
    import asyncio

    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.comm import CommClosedError

    results: list[Any] = [None] * n
    done, failed = 0, None
    address = _address(client)
    quiet = _Quiet("distributed.client")  # a lost scheduler is reported once, by SchedulerError
    try:
        futures = client.map(fn, *columns, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            if fut.status == "error":  # the task itself raised: re-raised below, as itself
                failed = fut
                break
            value = fut.result()
            i = index[fut.key]
            results[i] = value
            done += 1
            if on_result is not None:
                on_result(i, value)
            if progress is not None:
                progress(done, n)
    except (CommClosedError, FutureCancelledError, asyncio.CancelledError, OSError, TimeoutError) as e:
        why = " ".join(f"{type(e).__name__}: {e}".split())
        raise SchedulerError(f"Lost the Dask scheduler at {address} after {done} of {n} results ({why}); "
                             f"the {done} results already handed over are kept, the other {n - done} tasks "
                             f"were not finished: restart the scheduler and run again") from None
    finally:
        quiet.restore()
    if failed is not None:
        try:
            failed.result()  # the task's own exception, with its remote traceback
        finally:
            client.cancel([f for f in futures if f is not failed])
    return results


def map_simulations(fn: Callable[..., Any], items: Iterable[Any], scheduler: Any = None, *,
                    on_result: Callable[[int, Any], None] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[Any]:
    """Run a batch of simulations (DoE rows, campaign batches on ``sim://``, benchmark repetitions).

    :func:`map_tasks` for simulations: each item carries everything a run needs, its seed
    included (``(profile, seed)``), so the batch gives the same results in-process and on any
    number of workers, in any completion order. ``fn`` must be importable by the workers (a
    module-level function of an installed package, not one defined in ``__main__``).
    """
    return map_tasks(fn, items, scheduler=scheduler, on_result=on_result, progress=progress)


@contextlib.contextmanager
def joblib_backend(scheduler: Any) -> Iterator[Any]:
    """Route ``joblib.Parallel`` calls made inside the block to a Dask cluster.

    With ``scheduler=None`` nothing changes (joblib's own processes, as configured by the
    caller's ``n_jobs``). Otherwise joblib's Dask backend sends every task of every
    ``Parallel`` call to the cluster's workers; give ``n_jobs=-1`` so joblib does not fall back
    to running one task at a time in this process.

    If the scheduler is lost, joblib sees no workers and runs the remaining tasks in this
    process: the results stay complete and identical, and a :class:`CrystalloopWarning` says
    so once the block ends; an error raised by joblib because of the loss becomes a
    :class:`SchedulerError`.

    Yields
    ------
    Client or None
    """
    if parse_scheduler(scheduler)[0] == "inprocess":
        yield None
        return
    import joblib

    # the client is passed explicitly: joblib would otherwise take whatever client is current in
    # this process, which may belong to another cluster
    with dask_client(scheduler) as client, joblib.parallel_config(backend="dask", client=client):
        address = _address(client)
        quiet = _Quiet("distributed.client")
        try:
            yield client
        except Exception as e:
            if client.status == "running":
                raise  # the work itself failed: its own exception
            why = " ".join(f"{type(e).__name__}: {e}".split())
            raise SchedulerError(f"Lost the Dask scheduler at {address} during the parallel work ({why}); "
                                 f"what was stored before is kept: restart the scheduler and run again") from None
        finally:
            quiet.restore()
        if client.status != "running":  # joblib saw no workers left and ran the rest here, one task at a time
            warnings.warn(f"Lost the Dask scheduler at {address} during the parallel work; joblib finished the "
                          f"remaining tasks in this process (the results are complete, but ran on one core): "
                          f"restart the scheduler for the next run", CrystalloopWarning, stacklevel=3)
