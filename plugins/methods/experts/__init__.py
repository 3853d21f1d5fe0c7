"""Mixture-of-experts head topologies: ``mmoe`` (shared experts, a gate per task) and ``ple`` (shared and
task-specific experts, stacked in levels; one level is CGC). Each is an opt-in plugin of its own; the
building blocks they share live in :mod:`plugins.methods.experts.blocks`."""
