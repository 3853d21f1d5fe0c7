"""Gradient aggregators: balancers that keep each task's gradient of the shared parameters apart and combine
them into one update direction (PCGrad, CAGrad, MGDA, IMTL-G, Nash-MTL, Aligned-MTL, UPGrad). One module per
method, as TorchJD's ``aggregation/``; the Gram matrix, the base class and the quadratic-program solver they
share in ``_gramian``. Each is an opt-in plugin (``--plugins upgrad --update summed``). See ``docs/methods.md``."""
