"""Loss-weighting balancers: each task's loss gets a weight, from the method's state (uncertainty
weighting, DWA, RLW) or from the step's losses and gradients (GradNorm, FAMO). One module per method; each
is an opt-in plugin (``--plugins uncertainty --update summed``). See ``docs/methods.md``."""
