"""Optuna studies (``platform study``): ``space`` (space files, the trial proxy, a trial's
configuration), ``objective`` (objectives, pruning, one trial), ``runner`` (storage, the study,
reports). See ``docs/studies.md``."""
