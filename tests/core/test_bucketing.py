import random

from core.bucketing import bucket_plan


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
