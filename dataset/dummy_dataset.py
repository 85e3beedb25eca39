from torch.utils import data


class DummyDataset(data.Dataset):
    """`size` indices, `{'x': idx}` each: for models that make their samples on the fly (seed 003's PSFs)."""

    config_keys = {"size"}

    def __init__(self, opt):
        self.len = int(opt["size"])

    def __len__(self):
        return self.len

    def __getitem__(self, idx):
        return {"x": idx}
