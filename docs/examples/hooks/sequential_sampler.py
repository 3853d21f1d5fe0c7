"""A sampler: one task after another within each epoch (no mixing), in the order of --tasks."""

from core.api import Component, PlannedSampler, hookimpl


class Sequential(PlannedSampler):
    name = "sequential"  # PlannedSampler checks the sizes, keeps the settings as state, refuses other ones on resume

    def plan(self, epoch):
        steps = []
        for task in self.tasks:
            order = self.order(task, epoch)  # a permutation, a pure function of (seed, epoch, task)
            steps += [[(task, order[i:i + self.batch_size])] for i in range(0, len(order), self.batch_size)]
        return steps

    def steps_per_epoch(self):
        return sum(-(-size // self.batch_size) for size in self.sizes.values())


@hookimpl
def platform_samplers():
    return [Component("sequential", Sequential, help="one task after another within each epoch")]
