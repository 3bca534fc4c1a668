import pytest

from imaginarynet.classes import load_classes, parse_classes
from imaginarynet.errors import UserError
from imaginarynet.plan import AttemptScheduler, attempt_seed, split_quota


def test_parse_labels_display_names_comments_and_blanks():
    text = "# header\n\ndog\ndiningtable: dining table   # inline comment\n  tvmonitor:tv   monitor \n"
    classes = parse_classes(text)
    assert [(c.label, c.name) for c in classes] == [
        ("dog", "dog"), ("diningtable", "dining table"), ("tvmonitor", "tv monitor")]


@pytest.mark.parametrize("text, message", [
    ("dog\ncat\ndog\n", "duplicate class 'dog'"),
    ("# only a comment\n\n", "no classes"),
    ("traffic light\n", "bad label"),
])
def test_parse_rejects_bad_files(text, message):
    with pytest.raises(UserError, match=message):
        parse_classes(text)


def test_bundled_voc_and_coco():
    voc = load_classes("voc")
    assert len(voc) == 20 and voc[0].label == "aeroplane" and voc[-1].label == "tvmonitor"
    names = {c.label: c.name for c in voc}
    assert names["diningtable"] == "dining table" and names["pottedplant"] == "potted plant"
    assert load_classes("voc.txt") == voc
    coco = load_classes("coco")
    assert len(coco) == 80 and coco[0].label == "person"
    assert {c.label: c.name for c in coco}["traffic_light"] == "traffic light"


def test_missing_classfile_names_bundled_ones():
    with pytest.raises(UserError, match="class file not found: nope.*voc"):
        load_classes("nope")


def test_even_quota_split():
    assert split_quota(10, 3) == [4, 3, 3]
    assert split_quota(9, 3) == [3, 3, 3]
    assert split_quota(5, 5) == [1] * 5
    q = split_quota(10000, 20)
    assert sum(q) == 10000 and set(q) == {500}
    q = split_quota(10001, 80)
    assert sum(q) == 10001 and max(q) - min(q) == 1 and q == sorted(q, reverse=True)


def test_attempt_seed_is_a_pure_31_bit_function():
    # The formula is part of the data format: a changed one silently changes every dataset and breaks
    # resume across upgrades. The oracle: sha256 of "seed NUL label NUL k", low 8 bytes little-endian, 31 bits.
    import hashlib

    for seed, label, k in [(0, "dog", 3), (7, "diningtable", 0), (123456, "pottedplant", 9999)]:
        digest = hashlib.sha256(f"{seed}\x00{label}\x00{k}".encode()).digest()
        assert attempt_seed(seed, label, k) == int.from_bytes(digest[:8], "little") & 0x7FFFFFFF
    seeds = {attempt_seed(s, c, k) for s in (0, 1) for c in ("dog", "cat") for k in range(50)}
    assert len(seeds) == 200
    assert all(0 <= s < 2**31 for s in seeds)


def test_scheduler_fills_batches_across_classes_and_refills_rejections():
    sched = AttemptScheduler([2, 3], [8, 12], ["a", "b"], {})
    assert sched.next_batch(4) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    sched.record([{"class": "a", "k": 0, "status": "kept"}, {"class": "a", "k": 1, "status": "rejected"},
                  {"class": "b", "k": 0, "status": "kept"}, {"class": "b", "k": 1, "status": "kept"}])
    # a needs one more (after its rejected attempt 1), b one more
    assert sched.next_batch(4) == [(0, 2), (1, 2)]
    sched.record([{"class": "a", "k": 2, "status": "kept"}, {"class": "b", "k": 2, "status": "kept"}])
    assert sched.done() and sched.shortfalls() == []


def test_scheduler_stops_at_attempt_cap_and_reports_shortfall():
    sched = AttemptScheduler([2], [3], ["a"], {})
    for _ in range(3):
        batch = sched.next_batch(1)
        sched.record([{"class": "a", "k": batch[0][1], "status": "rejected"}])
    assert sched.next_batch(4) == [] and sched.done()
    assert sched.shortfalls() == [{"class": "a", "kept": 0, "target": 2, "attempts": 3}]
