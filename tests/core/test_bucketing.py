import random

from core.train.bucketing import bucket_plan, split_by_tokens


def random_plan(seed=0):
    rng = random.Random(seed)
    sizes = {"a": 200, "b": 90}
    perms = {t: rng.sample(range(n), n) for t, n in sizes.items()}
    plan = []
    for s in range(20):
        plan.append([("a", perms["a"][s * 10:(s + 1) * 10]), ("b", perms["b"][s * 4:(s + 1) * 4])])
    lengths = {t: [rng.randint(3, 60) for _ in range(n)] for t, n in sizes.items()}
    return plan, lengths


def padded_fraction(plan, lengths):
    real = padded = 0
    for step in plan:
        for task, batch in step:
            sizes = [lengths[task][i] for i in batch]
            real, padded = real + sum(sizes), padded + max(sizes) * len(sizes)
    return real / padded


def test_keeps_steps_tasks_sizes_and_examples():
    plan, lengths = random_plan()
    bucketed = bucket_plan(plan, lengths, window=8, seed=1, epoch=0)
    assert [[(t, len(b)) for t, b in step] for step in bucketed] == [[(t, len(b)) for t, b in step] for step in plan]
    for task in ("a", "b"):
        before = sorted(i for step in plan for t, b in step if t == task for i in b)
        after = sorted(i for step in bucketed for t, b in step if t == task for i in b)
        assert before == after


def test_batches_are_far_less_padded():
    plan, lengths = random_plan()
    bucketed = bucket_plan(plan, lengths, window=8, seed=1, epoch=0)
    assert padded_fraction(bucketed, lengths) > padded_fraction(plan, lengths) + 0.2


def test_deterministic_per_seed_and_epoch_and_off_with_window_one():
    plan, lengths = random_plan()
    assert bucket_plan(plan, lengths, 8, 1, 0) == bucket_plan(plan, lengths, 8, 1, 0)
    assert bucket_plan(plan, lengths, 8, 1, 0) != bucket_plan(plan, lengths, 8, 1, 1)
    assert bucket_plan(plan, lengths, 1, 1, 0) == plan


def test_batch_order_within_a_window_is_shuffled():
    plan, lengths = random_plan()
    bucketed = bucket_plan(plan, lengths, window=20, seed=3, epoch=0)
    longest = [max(lengths["a"][i] for i in step[0][1]) for step in bucketed]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_split_by_tokens_keeps_every_chunk_within_the_budget():
    rng = random.Random(3)
    lengths = [rng.randint(3, 128) for _ in range(200)]
    for texts in (1, 2):
        for indices in ([rng.randrange(200) for _ in range(32)], list(range(64))):
            chunks = split_by_tokens(indices, lengths, texts, max_tokens=1024)
            assert sorted(i for chunk in chunks for i in chunk) == sorted(indices)  # every example, once
            assert all(texts * len(c) * max(lengths[i] for i in c) <= 1024 or len(c) == 1 for c in chunks)
            assert len(chunks) > 1


def test_split_by_tokens_leaves_a_batch_within_the_budget_whole():
    lengths = [10, 50, 30, 20]
    assert split_by_tokens([2, 0, 3], lengths, 2, max_tokens=2 * 3 * 30) == [[2, 0, 3]]  # as given, order kept
    assert split_by_tokens([2, 0, 3], lengths, 2, max_tokens=None) == [[2, 0, 3]]
    assert split_by_tokens([1, 0], lengths, 1, max_tokens=10) == [[1], [0]]  # longer than the budget: alone
