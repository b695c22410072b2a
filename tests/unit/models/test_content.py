"""The TF-IDF content model (aura/models/content.py): weighted terms, unit rows, similar items, round trip."""

from __future__ import annotations

import numpy as np

from aura.models.content import ContentModel, tokens

ITEMS = {
    "m1": {"title": "Space Wars: The Return", "categories": ["scifi", "action"], "tags": ["space"], "text": None},
    "m2": {"title": "Space Wars II", "categories": ["scifi", "action"], "tags": ["space"], "text": "sequel"},
    "m3": {"title": "Love in Paris", "categories": ["romance"], "tags": [], "text": "a love story in paris"},
    "m4": {"title": "Paris Nights", "categories": ["romance", "drama"], "tags": [], "text": "love"},
    "m5": {"title": "Cooking 101", "categories": ["documentary"], "tags": ["food"], "text": None},
}


def test_tokens_weight_fields_and_drop_stop_words():
    t = tokens({"title": "The Space of Space", "categories": ["SciFi"], "tags": ["x"], "text": "space"})
    assert "the" not in t and "of" not in t
    assert t["space"] == 2 * 1.0 + 0.5 and t["cat:scifi"] == 2.0 and t["tag:x"] == 1.5


def test_tfidf_rows_are_unit_vectors_and_similar_items_share_content():
    m = ContentModel().fit(ITEMS)
    norms = np.sqrt(np.asarray(m.X.multiply(m.X).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, 1.0)
    assert m.similar("m1", 1)[0][0] == "m2"
    assert m.similar("m3", 1)[0][0] == "m4"
    assert all(i != "m5" for i, _ in m.similar("m1", 2))


def test_similar_all_matches_similar_per_item_blockwise():
    m = ContentModel().fit(ITEMS)
    allk = m.similar_all(3, block=2)
    for item in ITEMS:
        assert [i for i, _ in allk[item]] == [i for i, _ in m.similar(item, 3)]
        assert item not in [i for i, _ in allk[item]]


def test_content_model_round_trip():
    m = ContentModel().fit(ITEMS)
    back = ContentModel.from_bytes(m.to_bytes())
    assert back.similar_all(2) == m.similar_all(2)
