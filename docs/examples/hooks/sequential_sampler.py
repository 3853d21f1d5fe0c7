"""A sampler: one task after another within each epoch (no mixing), in the order of --tasks."""

from core.api import Component, ConfigError, hookimpl, permutation


class Sequential:
    def __init__(self, settings, sizes, batch_size, seed, epochs):
        self.sizes, self.batch_size, self.seed = dict(sizes), batch_size, seed

    def plan(self, epoch):
        steps = []
        for salt, (task, size) in enumerate(self.sizes.items()):
            order = permutation(size, self.seed, epoch, salt)  # a pure function of (seed, epoch)
            steps += [[(task, order[i:i + self.batch_size])] for i in range(0, size, self.batch_size)]
        return steps

    def steps_per_epoch(self):
        return sum(-(-size // self.batch_size) for size in self.sizes.values())

    def state_dict(self):
        return {"sizes": self.sizes, "batch_size": self.batch_size, "seed": self.seed}

    def load_state_dict(self, state):
        if state != self.state_dict():
            raise ConfigError(f"sequential: the checkpoint was written with {state}, this run has {self.state_dict()}")


@hookimpl
def platform_samplers():
    return [Component("sequential", Sequential, help="one task after another within each epoch")]
