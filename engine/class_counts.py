"""The classes a model's heads predict against the classes its data holds, before the run folder is
written: `BaseModel.class_targets()` says which batch key each head is scored on, and a dataset that
knows its classes without reading its files again says so in `class_counts()` (a generated set from its
settings, a manifest from the labels of its CSV). Data that cannot tell (mask files read per item) is
checked at each batch by the model (`utils.errors.classes.check_batch_classes`)."""

from utils.errors.classes import class_count_error


def check_class_counts(model) -> None:
    targets = model.class_targets()
    if not targets:
        return
    for phase, loader in (("train", model.train_loader), (model.evaluated_set, model.val_loader)):
        counts = getattr(getattr(loader, "dataset", None), "class_counts", None)
        if counts is None:
            continue
        counts = counts()
        # A dataset whose settings fix its classes names them (`{'mask': 'num_kinds'}`), so the message
        # points at both ends of the mismatch.
        settings = getattr(loader.dataset, "class_count_keys", {})
        for where, classes, key in targets:
            if counts.get(key, 0) > classes:
                kind = model.opt["datasets"][phase].get("type")
                source = f"'datasets.{phase}' ({kind})"
                if key in settings:
                    source += f" with 'datasets.{phase}.{settings[key]}'"
                raise class_count_error(where, classes, key, source, counts[key])
