"""Where the loop stands, saved with every checkpoint so that a resumed run continues mid-epoch."""


class TrainingState:
    def __init__(self):
        self.global_step = 0
        self.epoch = 0
        self.batches_in_epoch = 0
        self.skipped_steps = 0

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        for key in vars(self):
            setattr(self, key, int(state.get(key, 0)))
