"""Tokenizers with the fixed special ids every other module relies on.

Two kinds: SentencePiece (``Tokenizer``, what ``s2s train`` makes) and a word-level vocabulary
(``WordTokenizer``, for models imported from OpenNMT-py, whose inputs are pre-tokenized text).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Protocol

import sentencepiece as spm

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
SPECIAL_IDS = (PAD_ID, BOS_ID, EOS_ID, UNK_ID)
MODEL_TYPES = ("unigram", "bpe")

TOKENIZER_KINDS = ("sentencepiece", "words")

# SentencePiece reads at most this many bytes per training sentence; longer ones are skipped.
MAX_TRAIN_SENTENCE_BYTES = 16384


class TextTokenizer(Protocol):
    """What the model side needs from a tokenizer, whatever its kind."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def most_frequent(self, count: int) -> list[int]: ...

    def to_bytes(self) -> bytes: ...


class Tokenizer:
    """SentencePiece: text to ids and back. Ids 0-3 are PAD, BOS, EOS and UNK whatever the model."""

    kind = "sentencepiece"

    def __init__(
        self, processor: spm.SentencePieceProcessor, model_bytes: bytes, *, lowercase: bool = False
    ) -> None:
        ids = (processor.pad_id(), processor.bos_id(), processor.eos_id(), processor.unk_id())
        if ids != SPECIAL_IDS:
            raise ValueError(
                f"SentencePiece model has special ids (pad, bos, eos, unk) = {ids}; "
                f"this project needs {SPECIAL_IDS}: retrain it with Tokenizer.train"
            )
        self._sp = processor
        self._bytes = model_bytes
        # A model trained on lower-cased text (CNN/DailyMail as See et al. prepared it) reads
        # capitals as unknown pieces: such a tokenizer lower-cases what it encodes.
        self.lowercase = lowercase

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 0.9995,
        byte_fallback: bool = False,
        seed_sentences: int = 1_000_000,
        lowercase: bool = False,
    ) -> Tokenizer:
        """Train a SentencePiece model on ``texts`` (an iterator is fine; read once).

        ``byte_fallback`` spells characters outside the vocabulary as UTF-8 bytes instead of UNK,
        so nothing is lost on decoding; it needs ``vocab_size`` above 260 (256 bytes + specials).
        ``lowercase`` trains on lower-cased texts and lower-cases every text it encodes.
        """
        if model_type not in MODEL_TYPES:
            raise ValueError(f"model_type={model_type!r}: choose one of {MODEL_TYPES}")
        sentences = (
            t.strip().lower() if lowercase else t.strip() for t in texts if t and t.strip()
        )
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=buffer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            input_sentence_size=seed_sentences,
            shuffle_input_sentence=True,
            max_sentence_length=MAX_TRAIN_SENTENCE_BYTES,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
        return cls.from_bytes(buffer.getvalue(), lowercase=lowercase)

    @classmethod
    def from_bytes(cls, data: bytes, *, lowercase: bool = False) -> Tokenizer:
        """Load a serialized SentencePiece ``.model``."""
        processor = spm.SentencePieceProcessor()
        processor.LoadFromSerializedProto(data)
        return cls(processor, data, lowercase=lowercase)

    def to_bytes(self) -> bytes:
        return self._bytes

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    def most_frequent(self, count: int) -> list[int]:
        """The ``count`` most likely ordinary pieces, by SentencePiece score (specials, bytes and
        unused pieces excluded): the shortlist of Nallapati et al. (2016)."""
        sp = self._sp
        ordinary = [
            i
            for i in range(len(SPECIAL_IDS), self.vocab_size)
            if not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))
        ]
        ordinary.sort(key=lambda i: -sp.get_score(i))
        return ordinary[:count]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS or EOS."""
        return list(self._sp.encode(text.lower() if self.lowercase else text, out_type=int))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special ids are dropped."""
        return str(self._sp.decode([int(i) for i in ids if i not in SPECIAL_IDS]))


WORD_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


class WordTokenizer:
    """Whitespace tokens looked up in a fixed vocabulary (one token per id, specials first).

    Inputs must be tokenized the way the vocabulary was built (OpenNMT-py models usually expect
    pre-tokenized, often lower-cased text); unknown tokens become UNK.
    """

    kind = "words"

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(WORD_SPECIALS)]) != WORD_SPECIALS:
            raise ValueError(f"a word vocabulary must start with {WORD_SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a word vocabulary must not repeat a token")
        if any(not t or any(c.isspace() for c in t) for t in tokens):
            raise ValueError("word vocabulary tokens must be non-empty and hold no whitespace")
        self._tokens = list(tokens)
        self._ids = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def from_bytes(cls, data: bytes) -> WordTokenizer:
        """One token per line, UTF-8; the line number is the id."""
        return cls(data.decode("utf-8").split("\n")[:-1])

    def to_bytes(self) -> bytes:
        return "".join(f"{t}\n" for t in self._tokens).encode("utf-8")

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(token, UNK_ID) for token in text.split()]

    def decode(self, ids: Sequence[int], source: str | None = None) -> str:
        """Tokens joined by spaces; PAD, BOS and EOS dropped, UNK shown as ``<unk>``.

        An extended id V + p (see ``encode_extended``) is the word at position p of ``source``,
        the text it was copied from (``<unk>`` without one)."""
        words = source.split() if source is not None else []
        vocab = self.vocab_size
        out = []
        for i in (int(i) for i in ids):
            if i in SPECIAL_IDS[:3]:
                continue
            if i < vocab:
                out.append(self._tokens[i])
            else:
                out.append(words[i - vocab] if i - vocab < len(words) else "<unk>")
        return " ".join(out)

    def encode_extended(self, text: str) -> list[int]:
        """``encode``, but each unknown word gets the extended id V + (its first position in
        ``text``) instead of UNK: copy attention can then emit it, and ``decode`` spell it."""
        first: dict[str, int] = {}
        return [
            self._ids[word] if word in self._ids else self.vocab_size + first.setdefault(word, p)
            for p, word in enumerate(text.split())
        ]

    def most_frequent(self, count: int) -> list[int]:
        """Vocabularies are built most frequent first, so the first ordinary ids."""
        return list(range(len(SPECIAL_IDS), min(self.vocab_size, len(SPECIAL_IDS) + count)))


def load_tokenizer(kind: str, data: bytes, *, lowercase: bool = False) -> TextTokenizer:
    """A tokenizer of ``kind`` ('sentencepiece' or 'words') from its saved bytes; ``lowercase``
    (SentencePiece only) lower-cases what it encodes."""
    if kind == "sentencepiece":
        return Tokenizer.from_bytes(data, lowercase=lowercase)
    if kind == "words":
        return WordTokenizer.from_bytes(data)
    raise ValueError(f"tokenizer kind {kind!r}: choose one of {TOKENIZER_KINDS}")
