"""The stored formats of the recommender signals (aura/state/cooccurrence.py): every value the writers
store and the readers parse survives its round trip with every field, in the exact text stored."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from aura.state.cooccurrence import (
    MONITOR_STREAM,
    SeqEntry,
    decode_published,
    decode_vector,
    encode_published,
    encode_vector,
    fence_field,
    model_of,
    neighbours_args,
    normalise_neighbours,
    published_field,
    replace_zset_args,
    score_pairs,
    zset_args,
    zset_scores,
)


@pytest.mark.parametrize("entry", [
    SeqEntry("i1", 1.0, 1_700_000_000_123, False),
    SeqEntry("cart-item", 2.0, 0, True),
    SeqEntry("sku|with|bars", 3.0, 42, True),  # the item may contain the separator
    SeqEntry("", 1.0, 7, False),
])
def test_seq_entry_round_trip_keeps_every_field(entry):
    raw = entry.encode()
    back = SeqEntry.decode(raw)
    assert back == entry
    assert (back.item, back.weight, back.time, back.bought) == (entry.item, entry.weight, entry.time, entry.bought)


def test_seq_entry_stored_text():
    # "item|weight|time|bought": what the API's "users like you" script and seq readers split
    assert SeqEntry("a", 1.0, 123, False).encode() == "a|1|123|0"
    assert SeqEntry("b", 2.5, 9, True).encode() == "b|2.5|9|1"
    assert SeqEntry.decode("x|y|3|17|1") == SeqEntry("x|y", 3.0, 17, True)


def test_item_hash_fields_and_publish_marks():
    assert fence_field(3) == "f:3" and published_field("cooc") == "pub:cooc"
    raw = encode_published(12.5, 1_700_000_000.25)
    assert raw == "12.5|1700000000.25"
    assert decode_published(raw) == (12.5, 1_700_000_000.25)
    weight, t = 0.1 + 0.2, 1_712_345_678.123456  # repr: the exact float comes back
    assert decode_published(encode_published(weight, t)) == (weight, t)


def test_factor_vectors_round_trip_as_hex_float32():
    v = np.array([0.5, -1.25, 3.0e-8, 7.0], dtype=np.float32)
    raw = encode_vector(v)
    assert raw == v.tobytes().hex()
    back = decode_vector(raw)
    assert back.dtype == np.float32 and np.array_equal(back, v)
    back[0] = 9.0  # writable: the MF learner updates user vectors in place
    assert v[0] == 0.5


def test_replaced_sorted_set_arguments_are_members_as_json_and_scores_as_float64s():
    pairs = [("x", 0.5), ("y", 1 / 3)]
    members, scores = replace_zset_args(pairs)
    assert json.loads(members) == ["x", "y"] and b" " not in members
    assert struct.unpack("<2d", scores) == (0.5, 1 / 3)  # the exact doubles, no text in between
    assert zset_args(["x"], np.array([2.5], dtype=np.float32)) == [b'["x"]', struct.pack("<d", 2.5)]
    assert replace_zset_args([]) == [b"[]", b""]
    with pytest.raises(ValueError, match="finite"):
        zset_scores(["x"], [float("nan")])
    with pytest.raises(ValueError, match="2 members"):
        zset_scores(["x", "y"], [1.0])


def test_monitor_names_and_served_model():
    assert MONITOR_STREAM == "stream"
    assert model_of("hybrid+ease:3:abc") == "hybrid+ease"
    assert model_of("trending:0:x") == "trending" and model_of(None) is None and model_of("plain") is None


def test_normalise_neighbours_is_cosine_like_and_bounded():
    top = normalise_neighbours(4.0, [("b", 2.0), ("c", 2.0), ("z", 5.0)], {"b": 1.0, "c": 16.0}, k=5)
    assert top == [("b", pytest.approx(1.0)), ("c", pytest.approx(0.25))]  # z has no popularity: dropped
    assert normalise_neighbours(0.0, [("b", 2.0)], {"b": 1.0}, k=5) == []
    assert normalise_neighbours(4.0, [("b", 2.0), ("c", 2.0)], {"b": 1.0, "c": 16.0}, k=1) == [("b", 1.0)]


def test_raw_withscores_replies_of_both_protocols_become_pairs():
    assert score_pairs([["a", 2.5], ["b", 1.0]]) == [("a", 2.5), ("b", 1.0)]  # RESP3
    assert score_pairs(["a", "2.5", "b", "1"]) == [("a", 2.5), ("b", 1.0)]  # RESP2
    assert score_pairs([]) == []


def test_neighbours_script_arguments_carry_the_powers_in_raw_rank_order():
    names = ["b", "z", "c"]
    pi, k, mark_field, mark, blob = neighbours_args(4.0, names, {"b": 1.0, "c": 1 / 3, "a": 2.0}, 100,
                                                    "pub:cooc", "4.0|1.5")
    assert (pi, k, mark_field, mark) == ("2.0", 100, "pub:cooc", "4.0|1.5")
    # the raw names as read, each one's power or null (no popularity); floats as their exact text
    assert json.loads(blob) == [names, [1.0, None, 1 / 3]]
    assert repr(1 / 3).encode() in blob
    # an item without popularity: an emptied list, nothing to score
    assert neighbours_args(0.0, names, {"b": 1.0}, 100, "pub:cooc", "0.0|1.5")[0::4] == ["", b""]
