from svwhisper.text import TextParams, label_text, normalize


def test_normalize_lowercases_drops_punctuation_keeps_swedish_letters():
    assert normalize('"Jaså, står det till på det viset", tänkte gåskarlen.') == (
        "jaså står det till på det viset tänkte gåskarlen"
    )
    assert normalize("Café  ÅÄÖ!") == "café åäö"


def test_normalize_splits_words_joined_by_punctuation_and_composes_unicode():
    assert normalize("hej,då") == "hej då"
    assert normalize("a\u030a") == "å"  # decomposed å (a + combining ring) becomes one letter
    assert normalize("  ...  ") == ""


def test_label_text_follows_the_text_params():
    assert label_text("Hej, då!", TextParams(normalize_labels=True)) == "hej då"
    assert label_text("Hej, då!", TextParams(normalize_labels=False)) == "Hej, då!"
