"""The engine that runs a BaseModel: plain functions and small classes of the model, one job per module.

    run_folder   name, lock, commit and rollback of `path.root/name/experiment_key`   (run_lock: the lock)
    start        set-up, resume state, commit: everything before the first step
    loop         the training loop                    signals     SIGTERM / SIGINT at step boundaries
    checkpointing  save, rotate, find and load         weights     path.pretrained, save_pretrained, EMA swap
    evaluation   validation passes and `-test`        optimization  optimizers, LR schedules, clipping, EMA
    data         DataLoaders from `datasets`          state       the loop's position
    seed_style   how seed-style plugin code is made to train correctly
    events       the hook points other features attach to
    shutdown     the end of the process group (a last barrier against the gloo exit hang)

Each module calls only down (utils, dataset, models.prepared_network), never models/base_model.py.
"""
