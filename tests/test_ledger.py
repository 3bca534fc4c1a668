import json

from imaginarynet.ledger import Ledger


def _rec(c, k):
    return {"class": c, "k": k, "status": "kept", "prompt": "p", "seed": k}


def test_round_trip_and_order(tmp_path):
    path = tmp_path / "ledger.jsonl"
    led = Ledger(path)
    led.append_batch([_rec("b", 1), _rec("a", 0)])
    led.append_batch([_rec("b", 0)])
    again = Ledger(path)
    assert again.batches == 2 and len(again.records) == 3
    assert [r["k"] for r in again.by_class()["b"]] == [0, 1]


def test_torn_line_and_incomplete_batch_are_cut_off(tmp_path):
    path = tmp_path / "ledger.jsonl"
    led = Ledger(path)
    led.append_batch([_rec("a", 0), _rec("a", 1)])
    good = path.read_bytes()
    # a crash in the middle of the next batch: one whole line of 3, then half a line
    line = json.dumps(dict(_rec("a", 2), b=1, n=3)) + "\n"
    path.write_bytes(good + line.encode() + line[:10].encode())
    again = Ledger(path)
    assert again.batches == 1 and [r["k"] for r in again.records] == [0, 1]
    assert path.read_bytes() == good  # truncated, so the next append starts on a clean line
    again.append_batch([_rec("a", 2)])
    assert [r["k"] for r in Ledger(path).records] == [0, 1, 2]
