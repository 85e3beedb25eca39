"""`val.latent_map`: the map of the validation latents during training, to every tracker and to
TensorBoard's embedding projector.

    val:
      latent_map: {method: pca, every: 200}   # pca | umap | tsne; a multiple of train.validation_steps

Nothing here imports scikit-learn, umap-learn or matplotlib until a map is drawn.
"""

import re

import numpy as np

from utils.errors import ConfigError, did_you_mean

LATENT_MAP_KEYS = {
    "method": "pca",  # pca | umap | tsne
    "every": None,  # training steps between maps; None: at every validation
    "features": "flatten",  # flatten | mean | meanstd (see features.py)
    "label_regex": None,  # colour by this regex on the item names (first group), e.g. '^(p\d+)_'
    "projector": True,  # also write TensorBoard projector files
    "max_points": 2000,  # latents kept per map: UMAP and t-SNE cost grows faster than linearly
}
WHERE = "'val.latent_map'"


def read_latent_map_options(value, validation_steps, validation_epochs=None) -> dict | None:
    """The `val.latent_map` block with defaults filled in, or None when it is absent or false."""
    from utils.latent_maps.embedding import METHODS
    from utils.latent_maps.features import FEATURE_MODES

    if value is None or value is False:
        return None
    if not hasattr(value, "keys"):
        raise ConfigError(f"{WHERE} is {value!r}; give a block such as {{method: pca, every: 200}}.")
    unknown = [k for k in value.keys() if k not in LATENT_MAP_KEYS]
    if unknown:
        raise ConfigError(
            f"{WHERE} has no key '{unknown[0]}'{did_you_mean(unknown[0], LATENT_MAP_KEYS)}; "
            f"its keys are {', '.join(LATENT_MAP_KEYS)}."
        )
    options = {k: value.get(k, default) for k, default in LATENT_MAP_KEYS.items()}
    for key, allowed in (("method", METHODS), ("features", FEATURE_MODES)):
        if options[key] not in allowed:
            raise ConfigError(
                f"'val.latent_map.{key}' is {options[key]!r}{did_you_mean(str(options[key]), allowed)}; "
                f"use one of {', '.join(allowed)}."
            )
    every = options["every"]
    if every is not None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(
                f"'val.latent_map.every' is {every!r}; it must be a whole number of steps above 0."
            )
        if validation_epochs is not None:
            raise ConfigError(
                f"'val.latent_map.every' is {every} steps, but 'train.validation_epochs' validates at epoch "
                "ends, which need not fall on its multiples; leave 'every' out to draw a map at every validation."
            )
        if validation_steps and every % int(validation_steps):
            raise ConfigError(
                f"'val.latent_map.every' is {every}, not a multiple of 'train.validation_steps' "
                f"({validation_steps}), so no validation would ever draw the map; use e.g. {int(validation_steps)}."
            )
    if not isinstance(options["max_points"], int) or options["max_points"] < 3:
        raise ConfigError(
            f"'val.latent_map.max_points' is {options['max_points']!r}; it must be a whole number >= 3."
        )
    if options["label_regex"] is not None:
        try:
            re.compile(options["label_regex"])
        except re.error as error:
            raise ConfigError(
                f"'val.latent_map.label_regex' is not a valid regular expression: {error}."
            ) from None
    return options


class ValidationLatentMap:
    """Collects one validation pass's latents and draws their map at the chosen steps.

    A model collects the posterior means of a validation pass with `add()` between `begin(step)` and
    `finish(...)`; at the steps chosen by `every` the map is drawn (coloured by `label_regex` on the item
    names, e.g. the patient, when given) and logged as the image `val_latent_map_<method>`. With
    `projector: true` and a TensorBoard tracker, the latents, a sprite of thumbnails and a metadata table
    (name, group) are written beside the event files, so `tensorboard --logdir <run>/logs` shows them in
    its Projector tab."""

    def __init__(self, options: dict):
        self.options = options
        self.active = False
        self._items: list[tuple[np.ndarray, np.ndarray, str]] = []

    def wants(self, step: int) -> bool:
        every = self.options["every"]
        return every is None or step % every == 0

    def begin(self, step: int) -> None:
        self.active = self.wants(step)
        self._items = []

    def add(self, latents, images, names=None) -> None:
        """One validation batch: posterior means (N, C, ...) and the input images (N, C, ...)."""
        if not self.active:
            return
        from utils.latent_maps.features import thumbnails

        room = self.options["max_points"] - len(self._items)
        if room <= 0:
            return
        latents = latents[:room].detach().float().cpu().numpy()
        thumbs = thumbnails(images[:room].detach().cpu(), size=32)
        first = len(self._items)
        names = (
            [str(n) for n in names[:room]]
            if names is not None
            else [str(first + i) for i in range(len(latents))]
        )
        self._items += list(zip(latents, thumbs, names))

    def finish(self, opt, accelerator, step: int) -> str | None:
        """Draw and log the map (main process); returns the PNG path log_image wrote, or None."""
        if not self.active:
            return None
        self.active = False
        items = self._items
        self._items = []
        if accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            items = gather_object(items)[: self.options["max_points"]]
        if not accelerator.is_main_process or len(items) < 3:
            return None
        from utils.latent_maps.embedding import embed_2d
        from utils.latent_maps.features import latent_features
        from utils.latent_maps.static_figure import map_image
        from utils.misc import log_image

        thumbs = np.stack([item[1] for item in items])
        names = [item[2] for item in items]
        groups = self._groups(names)
        # Latents of images of different sizes differ in shape: the features mode decides if they compare.
        features = latent_features(
            [item[0] for item in items], self.options["features"], "'val.latent_map.features'"
        )
        method = self.options["method"]
        coords = embed_2d(features, method, seed=int(opt.get("seed", 0) or 0))
        image = map_image(coords, groups, f"validation latents, step {step}: {method.upper()}")
        path = log_image(opt, accelerator, image.transpose(2, 0, 1)[None], f"val_latent_map_{method}", step)
        if self.options["projector"]:
            from utils.latent_maps.projector import write_projector

            for tracker in accelerator.trackers:
                if tracker.name == "tensorboard":
                    write_projector(tracker.writer, features, names, groups, thumbs, step)
        return path

    def _groups(self, names: list[str]) -> list[str]:
        pattern = self.options["label_regex"]
        if pattern is None:
            return ["val"] * len(names)
        compiled = re.compile(pattern)
        groups = []
        for name in names:
            match = compiled.search(name)
            # A name the regex misses is shown as its own group rather than stopping training.
            groups.append((match.group(1) if compiled.groups else match.group(0)) if match else "unmatched")
        return groups
