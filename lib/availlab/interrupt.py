"""Ctrl-C (or SIGTERM) during `availlab run`: the runbook's own clean-up runs, then the run stops.

papermill executes the notebook in a worker thread, so that the signal stays ours. (In the main
thread nbclient turns SIGINT into a kernel shutdown scheduled on its event loop, which races with
the running cell: seen, a Ctrl-C that was lost while the run went on to a PASS.) The main thread
then sends SIGINT to the kernel it started, by its process handle: ipykernel turns it into
KeyboardInterrupt inside the running cell, so the runbook's `finally` blocks stop the workload
clients, abort and thaw a backup, repair a fault. Only if the cell has not ended after
STOP_GRACE_S (a backup's clean-up alone may take 100 s) comes SIGTERM, then SIGKILL; a second
Ctrl-C skips the wait.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

STOP_GRACE_S = 120
ESCALATION = ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0))


def _recording_kernel_manager(kernels: list) -> type:
    """papermill passes `kernel_manager_class` through to nbclient: the subclass keeps a handle on
    every kernel manager made, so the kernel is signalled by its own Popen, never by a PID search."""
    from jupyter_client import AsyncKernelManager

    class Recording(AsyncKernelManager):
        def __init__(self, *args, **kwargs):
            # the kernel's traffic encrypted (CurveZMQ) where jupyter_client and the kernel spec
            # offer it: otherwise every run printed ipykernel's "running over TCP without encryption"
            if "transport_encryption" in AsyncKernelManager.class_trait_names():
                kwargs.setdefault("transport_encryption", "auto")
            super().__init__(*args, **kwargs)
            kernels.append(self)

    return Recording


def _signal_kernels(kernels: list, sig: int, sent: set) -> None:
    for km in list(kernels):
        proc = getattr(getattr(km, "provisioner", None), "process", None)
        if proc is not None and (id(proc), sig) not in sent and proc.poll() is None:
            proc.send_signal(sig)  # Popen: never a reused PID of someone else's process
            sent.add((id(proc), sig))


def _stop(kernels: list, done: threading.Event) -> None:
    sent: set = set()
    steps = ((signal.SIGINT, STOP_GRACE_S), *ESCALATION)
    print(f"availlab: interrupted; the runbook cleans up (up to {STOP_GRACE_S} s; Ctrl-C again to stop "
          "at once)", file=sys.stderr, flush=True)
    for sig, wait_s in steps:
        end = threading.Event()
        timer = threading.Timer(wait_s, end.set)
        timer.start()
        try:
            while not (done.is_set() or end.is_set()):
                _signal_kernels(kernels, sig, sent)  # a kernel that starts only now gets it too
                done.wait(0.2)
        except KeyboardInterrupt:  # the second Ctrl-C: no more waiting
            _signal_kernels(kernels, signal.SIGKILL, sent)
            done.wait(10)
            return
        finally:
            timer.cancel()
        if done.is_set():
            return


def run_interruptibly(execute: Callable[[type], None]) -> None:
    """execute(kernel_manager_class) in a worker thread; KeyboardInterrupt once it has stopped."""
    kernels: list = []
    km_class = _recording_kernel_manager(kernels)
    done, failure = threading.Event(), {}

    def work() -> None:
        try:
            execute(km_class)
        except BaseException as exc:  # handed to the main thread, which raises it
            failure["error"] = exc
        finally:
            done.set()

    def interrupt(_sig, _frame) -> None:
        raise KeyboardInterrupt

    # Python leaves SIGINT ignored when it started ignored (a job started with `&` by a script, as
    # a CI step may be): an explicit `kill -INT` must still interrupt the run. SIGTERM (a CI
    # timeout, `timeout(1)`) is treated alike, so the run still ends with its partial report.
    main = threading.current_thread() is threading.main_thread()
    before = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    worker = threading.Thread(target=work, name="papermill", daemon=True)
    try:
        worker.start()
        while not done.wait(0.2):  # not Thread.join: an interrupted join can mark a live thread dead
            pass
    except KeyboardInterrupt:
        _stop(kernels, done)
        raise
    finally:
        for s, h in before.items():
            if h is not None:  # None: a handler installed from C, which cannot be put back
                signal.signal(s, h)
    if "error" in failure:
        raise failure["error"]
