"""The bundled word dataset data/words.csv meets the requirements of the issue (checked with GPT-2's real tokenizer)."""
import re
from pathlib import Path

import numpy as np

from probekit.words import check_tokenization, default_word_csv


def test_bundled_path_is_in_repo():
    p = default_word_csv()
    assert p.name == "words.csv" and p.parent.name == "data"
    assert (Path(__file__).resolve().parent.parent / "data" / "words.csv").samefile(p)


def test_at_least_8_binary_axes_with_40_words_per_class(ds):
    assert len(ds.axes) >= 8
    for a in ds.axes:
        counts = ds.class_counts(a)
        assert len(counts) == 2, (a, counts)
        assert min(counts.values()) >= 40, (a, counts)


def test_40_single_token_words_per_class(ds):
    single = ds.subset(single_token_only=True)
    for a in ds.axes:
        assert min(single.class_counts(a).values()) >= 40, (a, single.class_counts(a))


def test_most_words_have_two_or_more_axes(ds):
    n_axes = sum(ds.labelled(a).astype(int) for a in ds.axes)
    assert (n_axes >= 1).all(), [w for w, n in zip(ds.words, n_axes) if n == 0]
    assert np.mean(n_axes >= 2) > 0.75
    assert np.mean(n_axes >= 3) > 0.5
    assert len(ds) >= 300


def test_no_duplicates_even_ignoring_case_and_space(ds):
    norm = [w.strip().lower() for w in ds.words]
    assert len(set(norm)) == len(norm)
    assert all(w == w.strip() and w for w in ds.words)


def test_tokenization_rule_with_real_gpt2_tokenizer(ds, tok):
    rep = check_tokenization(ds, tok)
    assert rep.ok, rep.wrongly_single
    assert rep.wrongly_multi == []             # the marks are exact both ways
    assert len(rep.single) / len(ds) >= 0.9    # nearly all single-token
    assert 0 < len(rep.multi)                  # the multi-token convention is exercised
    # words are read with their leading space: " king" is one token, and equals the in-sentence token
    i = ds.index("king")
    assert rep.n_tokens[i] == 1
    assert tok.encode(" king")[0] in tok.encode("The king is here")


def test_class_names_are_single_tokens_for_natural_labels(ds, tok):
    for a in ds.axes:
        for c in ds.classes(a):
            assert len(tok.encode(" " + c)) == 1, (a, c)


def test_spot_check_labels(ds):
    assert ds.word_classes("king") == {"gender": "male", "number": "singular", "animacy": "living",
                                       "being": "person", "pos": "noun"}
    assert ds.class_of("kings", "number") == "plural"
    assert ds.class_of("queen", "gender") == "female"
    assert ds.class_of("went", "tense") == "past" and ds.class_of("goes", "tense") == "present"
    assert ds.class_of("ice", "temperature") == "cold" and ds.class_of("ice", "number") is None
    assert ds.class_of("calf", "age") == "young" and ds.class_of("cow", "age") == "adult"
    assert ds.class_of("elephant", "size") == "big" and ds.class_of("ant", "size") == "small"
    assert ds.class_of("joy", "sentiment") == "positive" and ds.class_of("war", "sentiment") == "negative"


def test_readme_counts_match_the_csv(ds):
    text = (default_word_csv().parent / "README.md").read_text()
    for a in ds.axes:
        row = next(line for line in text.splitlines() if line.startswith(f"| {a} |"))
        stated = dict((c, int(n)) for c, n in re.findall(r"(\w+) \((\d+)\)", row))
        assert stated == ds.class_counts(a), (a, stated)
    assert f"{len(ds)} words" in text
    assert f"{int(ds.multi_token.sum())} multi-token words" in text
