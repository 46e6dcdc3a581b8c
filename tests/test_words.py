"""probekit.words: CSV loading and validation, labels, subsets, hashing, tokenization check, word prompts."""
import numpy as np
import pytest

from probekit.errors import DataError
from probekit.tokenizer import encode_segments, load_gpt2_tokenizer
from probekit.words import WordDataset, check_tokenization, load_word_csv, word_prompts

GOOD = """word,gender,number,multi_token
king,male,singular,false
queens,female,plural,false
ice,,,false
grandpa,male,singular,true
"""


def write(tmp_path, text, name="w.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def small(tmp_path):
    return load_word_csv(write(tmp_path, GOOD))


def test_load_labels_classes(small):
    assert isinstance(small, WordDataset)
    assert small.words == ("king", "queens", "ice", "grandpa")
    assert small.texts == [" king", " queens", " ice", " grandpa"]
    assert small.axes == ["gender", "number"]
    assert small.classes("gender") == ["female", "male"]
    np.testing.assert_array_equal(small.labels("gender"), [1, 0, -1, 1])
    np.testing.assert_array_equal(small.labels("number"), [1, 0, -1, 1])
    np.testing.assert_array_equal(small.multi_token, [False, False, False, True])
    assert small.labels("gender").dtype == np.int64
    assert small.class_of("ice", "gender") is None
    assert small.word_classes(" king") == {"gender": "male", "number": "singular"}   # leading space tolerated


def test_subset_keeps_class_ids(small):
    sub = small.subset(labelled_on="gender", single_token_only=True)
    assert sub.words == ("king", "queens")
    assert sub.classes("gender") == ["female", "male"]
    sub2 = small.subset(words=["queens"])
    assert sub2.classes("gender") == ["female", "male"]          # class ids unchanged though 'male' is absent
    np.testing.assert_array_equal(sub2.labels("gender"), [0])
    with pytest.raises(DataError, match="'queen' is not in"):
        small.subset(words=["queen"])
    with pytest.raises(DataError, match="not in"):
        small.index("prince")
    with pytest.raises(DataError, match="unknown concept axis 'colour'"):
        small.labels("colour")


def test_data_hash_is_content_based(tmp_path, small):
    reformatted = GOOD.replace("king,male", "  king ,male").replace("\n", "\r\n")
    again = load_word_csv(write(tmp_path, reformatted, "b.csv"))
    assert again.data_hash == small.data_hash
    changed = load_word_csv(write(tmp_path, GOOD.replace("ice,,", "ice,female,"), "c.csv"))
    assert changed.data_hash != small.data_hash
    assert small.subset(words=["king", "queens"]).data_hash != small.data_hash


def test_to_csv_round_trip(tmp_path, small):
    out = tmp_path / "out.csv"
    small.to_csv(out)
    back = load_word_csv(out)
    assert back.data_hash == small.data_hash


def test_no_multi_token_column_defaults_to_false(tmp_path):
    ds = load_word_csv(write(tmp_path, "word,size\nant,small\nwhale,big\n"))
    assert not ds.multi_token.any()


@pytest.mark.parametrize("text, match", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("gender,number\nmale,singular\n", "no 'word' column"),
    ("word,gender\n", "no words"),
    ("word,multi_token\nking,false\n", "no concept axis"),
    ("word,gender,gender\nking,male,male\n", "repeated column names"),
    ("word,gender\nking,male\nqueen,female\nking,male\n", "line 4: duplicate word 'king' \\(first on line 2\\)"),
    ("word,gender\nking,male,extra\nqueen,female\n", "line 2: 3 fields, the header has 2"),
    ("word,gender\nking\nqueen,female\n", "line 2: 1 fields"),
    ("word,gender\n,male\nqueen,female\n", "line 2: the word is empty"),
    ("word,colour\nsky,blue\ngrass,green\nblood,red\n", "axis 'colour' has 3 classes"),
    ("word,gender\nking,male\nprince,male\n", "axis 'gender' has 1 class"),
    ("word,gender,multi_token\nking,male,maybe\nqueen,female,false\n", "line 2: multi_token must be true or false"),
])
def test_validation_errors(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load_word_csv(write(tmp_path, text))


def test_missing_file_and_multiclass_allowed(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_word_csv(tmp_path / "nope.csv")
    text = "word,colour,size\nsky,blue,big\ngrass,green,small\nblood,red,small\n"
    ds = load_word_csv(write(tmp_path, text), allow_multiclass=["colour"])
    assert ds.classes("colour") == ["blue", "green", "red"]
    with pytest.raises(DataError, match="colour"):
        load_word_csv(write(tmp_path, text, "x.csv"), allow_multiclass=["size"])


def test_check_tokenization_flags_wrong_marks(tmp_path):
    tok = load_gpt2_tokenizer()
    text = "word,gender,multi_token\nking,male,false\nstepmother,female,false\nqueen,female,true\n"
    ds = load_word_csv(write(tmp_path, text))
    rep = check_tokenization(ds, tok)
    assert rep.wrongly_single == ["stepmother"]     # " stepmother" is several GPT-2 tokens
    assert rep.wrongly_multi == ["queen"]
    assert not rep.ok
    with pytest.raises(DataError, match="stepmother"):
        rep.raise_if_bad()
    assert rep.to_dict()["n_multi"] == 1


def test_word_prompts_spans(small):
    tok = load_gpt2_tokenizer()
    prompts = word_prompts(small, "The {word} is")
    assert [p.meta["word"] for p in prompts] == list(small.words)
    p = prompts[0]
    assert p.segments == (("prefix", "The"), ("word", " king"), ("suffix", " is"))
    assert p.meta["classes"] == {"gender": "male", "number": "singular"}
    ids, spans = encode_segments(tok, p.segments)
    assert ids == tok.encode("The king is")                       # segment encoding == whole-string encoding
    assert [ids[i] for i in spans["word"]] == tok.encode(" king")
    g = word_prompts(small, "{word}", words=["grandpa"])[0]       # multi-token word: the span covers all its tokens
    ids, spans = encode_segments(tok, g.segments)
    assert g.segments == (("word", " grandpa"),) and len(spans["word"]) == len(ids) > 1
    with pytest.raises(DataError, match="exactly once"):
        word_prompts(small, "no placeholder")


def test_tokenizer_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    """The cached tokenizer folder is reused as it is (transformers 5 writes tokenizer.json, no vocab.json):
    a second call neither rebuilds nor replaces it, so parallel processes never pull it from under a reader."""
    import os

    from probekit.tokenizer import gpt2_tokenizer_dir

    d = gpt2_tokenizer_dir(tmp_path / "tok")
    assert load_gpt2_tokenizer(tmp_path / "tok").encode(" king") == load_gpt2_tokenizer().encode(" king")
    before = os.stat(d).st_ino, (d / "tokenizer_config.json").stat().st_mtime_ns
    monkeypatch.setattr(os, "replace", lambda *a: pytest.fail("the complete cache was rebuilt"))
    assert gpt2_tokenizer_dir(tmp_path / "tok") == d
    assert (os.stat(d).st_ino, (d / "tokenizer_config.json").stat().st_mtime_ns) == before
