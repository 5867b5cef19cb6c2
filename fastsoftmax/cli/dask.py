"""--dask: the scheduler's word, and a dask.distributed client for it (imported only when asked for)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import urllib.parse

# --dask local:N starts at most this many worker processes per core.
WORKERS_PER_CORE = 4


def parse_scheduler(text: str) -> str:
    """--dask's word: a scheduler's TCP address, tcp://host:port (or host:port), or local:N with
    1 <= N <= WORKERS_PER_CORE per core. Other words (inproc://, a host without a port) are refused
    here, where dask.distributed would fail on them with a message that names neither."""
    if text.startswith("local:"):
        limit = WORKERS_PER_CORE * (os.cpu_count() or 1)
        count = text.removeprefix("local:")
        if not (count.isdigit() and 1 <= int(count) <= limit):
            raise ValueError(f"--dask local:N takes a worker count N from 1 to {limit} "
                             f"({WORKERS_PER_CORE} per core), got {text!r}")
        return f"local:{int(count)}"
    address = text if "://" in text else f"tcp://{text}"
    try:
        parts = urllib.parse.urlsplit(address)
        port = parts.port
    except ValueError:  # a port out of range, or a malformed host
        parts, port = None, None
    if (parts is None or parts.scheme != "tcp" or not parts.hostname or not port or parts.username
            or parts.path or parts.query or parts.fragment or any(c.isspace() for c in text)):
        raise ValueError(f"--dask takes a scheduler's address, tcp://host:port (e.g. tcp://10.0.0.5:8786) or "
                         f"host:port, or local:N to start N workers here; got {text!r}")
    return address


@contextlib.contextmanager
def connect(scheduler: str):
    """A dask.distributed Client for parse_scheduler's word, closed (with its LocalCluster) on exit.

    local:N starts N worker processes sharing the cores, each running Numba
    on its share of them (NUMBA_NUM_THREADS), so workers do not oversubscribe.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ImportError("--dask needs Dask's distributed scheduler: install it with "
                          "`pip install fastsoftmax[dask]`") from None
    if not scheduler.startswith("local:"):
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as e:
            raise OSError(f"could not reach the Dask scheduler at {scheduler}: {e}") from None
        with client:
            yield client
        return
    workers = int(scheduler.removeprefix("local:"))
    threads = max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR, env={"NUMBA_NUM_THREADS": str(threads)}) as cluster:
        with Client(cluster) as client:
            yield client


def scheduler_flag(text):
    """parse_scheduler as an argparse type: a bad word is argparse's one-line error."""
    try:
        return parse_scheduler(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
