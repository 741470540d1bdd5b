import pytest

from pipeline.splits import assign_splits, parse_ratios


def item(i, group=None, identity=None, split=None):
    return {"id": f"x{i}", "group": group or f"x{i}", "identity": identity, "split": split}


def test_groups_and_identities_never_straddle_splits():
    items = [item(i, group=f"g{i // 3}", identity=f"p{i // 5}") for i in range(300)]
    splits, report = assign_splits(items, seed=1)
    for key in ("group", "identity"):
        seen = {}
        for it, s in zip(items, splits):
            assert seen.setdefault(it[key], s) == s
    # groups of 3 chained by identities of 5: components span 15 items
    assert report.components == 20 and report.assigned == 20
    counts = {s: splits.count(s) for s in set(splits)}
    assert set(counts) <= {"train", "val", "test"} and counts["train"] > counts.get("test", 0)


def test_given_splits_are_kept_and_conflicts_go_to_the_most_held_out():
    items = [item(0, "A", "p", "train"), item(1, "A", None, None), item(2, "B", "p", "test"), item(3, "C", None, "val")]
    splits, report = assign_splits(items)
    assert splits == ["test", "test", "test", "val"]
    assert report.conflicts == [{"component": "g:A", "given": ["test", "train"], "chosen": "test"}]
    splits, _ = assign_splits(items, keep_given=False, seed=3)
    assert splits[0] == splits[1] == splits[2]


def test_assignment_is_deterministic_and_stable_when_items_are_added():
    items = [item(i) for i in range(50)]
    a, _ = assign_splits(items, seed=7)
    b, _ = assign_splits(items + [item(i) for i in range(50, 80)], seed=7)
    assert b[:50] == a
    c, _ = assign_splits(items, seed=8)
    assert c != a


def test_ratios():
    assert parse_ratios("train=0.7,val=0.1,test=0.2") == {"train": 0.7, "val": 0.1, "test": 0.2}
    with pytest.raises(ValueError, match="NAME=FRACTION"):
        parse_ratios("train:0.7")
    with pytest.raises(ValueError, match="sum to 1"):
        assign_splits([item(0)], {"train": 0.7, "val": 0.1})
    splits, _ = assign_splits([item(i) for i in range(100)], {"train": 1.0, "val": 0.0, "test": 0.0})
    assert set(splits) == {"train"}
