from torch.utils import data

from utils.config.schema import Key


class DummyDataset(data.Dataset):
    """`size` indices, `{'x': idx}` each: for models that make their samples on the fly (the PSF models' ray-traced PSFs)."""

    config_keys = {"size": Key(None, "int", "Number of indices per epoch.", minimum=1, required=True)}

    def __init__(self, opt):
        self.len = int(opt["size"])

    def __len__(self):
        return self.len

    def __getitem__(self, idx):
        return {"x": idx}
