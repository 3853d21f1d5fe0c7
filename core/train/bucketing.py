"""Length bucketing: regroup a planned epoch so each batch holds examples of similar length; and
splitting a batch into chunks of bounded padded size (the activation memory of its forward).

Random batches of CS224N sentences are 35-50% real tokens, the rest padding. Within each task, the
examples of every ``window`` consecutive batches of the plan are sorted by length and dealt back
into batches of the same sizes, whose order inside the window is then shuffled. Steps keep their
tasks and batch sizes, every example keeps its epoch, and the result is a pure function of
(seed, epoch), so resumed runs see the same batches.
"""

from __future__ import annotations

from core.train.sampling import Step, permutation


def bucket_plan(plan: list[Step], lengths: dict[str, list[int]], window: int, seed: int, epoch: int) -> list[Step]:
    """``plan`` with each task's batches regrouped by length within windows of ``window`` batches."""
    if window <= 1:
        return plan
    positions: dict[str, list[tuple[int, int]]] = {}  # task -> (step, slot) of its batches, in plan order
    for s, step in enumerate(plan):
        for b, (task, _) in enumerate(step):
            positions.setdefault(task, []).append((s, b))
    new_plan = [list(step) for step in plan]
    for salt, (task, places) in enumerate(sorted(positions.items())):
        task_lengths = lengths[task]
        for start in range(0, len(places), window):
            chunk = places[start:start + window]
            examples = [i for s, b in chunk for i in plan[s][b][1]]
            examples.sort(key=task_lengths.__getitem__)
            batches, offset = [], 0
            for s, b in chunk:
                size = len(plan[s][b][1])
                batches.append(examples[offset:offset + size])
                offset += size
            order = permutation(len(chunk), seed, epoch, salt=1_000 + salt * 100_003 + start)
            for (s, b), k in zip(chunk, order):
                new_plan[s][b] = (task, batches[k])
    return new_plan


def split_by_tokens(indices: list[int], lengths: list[int], texts: int, max_tokens: int | None) -> list[list[int]]:
    """``indices`` as chunks whose padded size (``texts`` sequences per example, each padded to the
    chunk's longest) stays within ``max_tokens``; longest examples first, each chunk as full as the
    budget allows, one example per chunk at least. A batch within the budget is one chunk, as given."""
    if max_tokens is None or texts * len(indices) * max(lengths[i] for i in indices) <= max_tokens:
        return [indices]
    ordered = sorted(indices, key=lengths.__getitem__, reverse=True)
    chunks: list[list[int]] = []
    for i in ordered:
        # sorted longest first: a chunk's first example sets its padded length
        if chunks and texts * (len(chunks[-1]) + 1) * lengths[chunks[-1][0]] <= max_tokens:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks
