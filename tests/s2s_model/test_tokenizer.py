from pathlib import Path

import pytest

from s2s_model import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, WordTokenizer
from tests.conftest import make_texts

DEBIAN = Path(__file__).resolve().parents[3] / "shared/data/debian-descriptions"


def test_special_ids_are_fixed(tiny_tokenizer: Tokenizer) -> None:
    pieces = [tiny_tokenizer._sp.id_to_piece(i) for i in (PAD_ID, BOS_ID, EOS_ID, UNK_ID)]
    assert pieces == ["<pad>", "<s>", "</s>", "<unk>"]


def test_round_trip_and_no_specials_in_encoding(tiny_tokenizer: Tokenizer) -> None:
    text = "the package provides a fast library for parsing data files."
    ids = tiny_tokenizer.encode(text)
    assert ids and not {PAD_ID, BOS_ID, EOS_ID} & set(ids)
    assert tiny_tokenizer.decode(ids) == text


def test_decode_drops_special_ids(tiny_tokenizer: Tokenizer) -> None:
    ids = tiny_tokenizer.encode("python bindings")
    assert tiny_tokenizer.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == "python bindings"


def test_model_bytes_round_trip(tiny_tokenizer: Tokenizer) -> None:
    clone = Tokenizer.from_bytes(tiny_tokenizer.to_bytes())
    text = make_texts(1, seed=9)[0]
    assert clone.encode(text) == tiny_tokenizer.encode(text)
    assert clone.vocab_size == tiny_tokenizer.vocab_size


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_train_kinds(model_type: str) -> None:
    tok = Tokenizer.train(make_texts(300, seed=3), vocab_size=60, model_type=model_type)
    assert 5 < tok.vocab_size <= 60
    assert tok.decode(tok.encode("server client")) == "server client"


def test_unknown_model_type_is_refused() -> None:
    with pytest.raises(ValueError, match="model_type"):
        Tokenizer.train(["a b c"], vocab_size=10, model_type="wordpiece")


@pytest.mark.skipif(not DEBIAN.exists(), reason="needs ../shared (development machines only)")
def test_real_corpus_round_trip() -> None:
    import gzip
    import itertools
    import json

    with gzip.open(DEBIAN / "debian_descriptions.jsonl.gz", "rt") as handle:
        texts = [json.loads(line)["description"] for line in itertools.islice(handle, 2000)]
    tok = Tokenizer.train(texts, vocab_size=2000, byte_fallback=True)
    exact = sum(tok.decode(tok.encode(t)) == " ".join(t.split()) for t in texts)
    assert exact >= 0.99 * len(texts)  # the rest differ only by NFKC normalisation
    assert all(UNK_ID not in tok.encode(t) for t in texts)


def test_unknown_words_get_extended_ids_and_decode_back_from_their_source() -> None:
    words = WordTokenizer(["<pad>", "<s>", "</s>", "<unk>", "the", "pkg"])
    text = "the zlib pkg for zlib"
    assert words.encode(text) == [4, UNK_ID, 5, UNK_ID, UNK_ID]
    ids = words.encode_extended(text)
    assert ids == [4, 6 + 1, 5, 6 + 3, 6 + 1]  # V + first position, the same word the same id
    assert words.decode([BOS_ID, 7, 5, 9, UNK_ID, EOS_ID], text) == "zlib pkg for <unk>"
    assert words.decode([7, 4]) == "<unk> the"  # no source: nothing to spell it with
