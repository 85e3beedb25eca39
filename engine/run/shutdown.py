"""The end of a run's process group, without the exit hang of torch's gloo backend.

The cure is a last barrier whose handle this process keeps for good (`end_processes` says why).
"""

import torch

# torch joins gloo's worker threads in the `ProcessGroupGloo` destructor, which runs when the last
# reference to the group goes: when the DDP-wrapped networks are freed as `trainer.main()` returns, with
# the GIL held. A worker thread that is just then deleting a finished collective deletes the Python
# tensors it reduced, and needs the GIL for that: each waits for the other for ever. With gloo the
# deleting thread is often a barrier's, which holds the collectives that were still running when it
# started and deletes them with itself. On a loaded 2-core machine 12 of 53 two-process runs hang at
# exit this way without the kept barrier (gdb: the main thread in `~ProcessGroupGloo` ->
# `thread::join`, `pt_gloo_runloop` in `~AsyncBarrierWork` -> `decref_pyobject` -> `take_gil`); with
# it, none of 78 does.
#
# A kept barrier holds every collective still in the workers, so none is deleted before it is; the
# workers' last reference to it is not the last one, so they delete nothing; the workers are idle when
# the group is destroyed, and what the barrier holds is deleted only at interpreter exit, on the main
# thread.
_KEPT_BARRIERS = []  # never emptied


def end_processes(accelerator, clean: bool) -> None:
    """`accelerator.end_training()` (trackers finished, process group destroyed), after a last barrier
    when the run ended `clean`ly on every process. After an error the other processes may never reach a
    barrier (torchrun stops them), so none is waited for."""
    if clean and torch.distributed.is_available() and torch.distributed.is_initialized():
        barrier = torch.distributed.barrier(async_op=True)
        barrier.wait()
        # The deadlock is gloo's; an NCCL work holds CUDA events, better freed before CUDA shuts down.
        if "gloo" in str(torch.distributed.get_backend()):
            _KEPT_BARRIERS.append(barrier)
    accelerator.end_training()
