"""Preemption: SIGTERM (a cluster's) or SIGINT (Ctrl-C) ends the run at the next step boundary.

The signal only sets a flag; the loop checks it after each optimizer step, writes a checkpoint and
exits cleanly, so a preempted job resumes exactly where it stopped. A second Ctrl-C stops at once.
"""

import signal
import threading

import torch


class StopSignals:
    """`with StopSignals() as stop:` routes SIGTERM and SIGINT to `stop.requested(accelerator)`."""

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._request_stop)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False

    def _request_stop(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self, accelerator) -> int:
        """The signal number if any process was asked to stop (all processes must stop together)."""
        stop = self.signum
        if accelerator.num_processes > 1:
            flag = torch.tensor([stop], device=accelerator.device)
            stop = int(accelerator.reduce(flag, "max").item())
        return stop
