"""Dataset loaders (real formats, user-given paths), vocabularies, batching, synthetic tasks.

Everything here is pure Python + NumPy. Loaders read the datasets' own formats (PTB, tiny
Shakespeare, SST / SST-2 / IMDB, CoNLL-2003, Tatoeba pairs, CSV time series); a malformed file
raises :class:`DataFormatError` (a ``ValueError``) naming the file and line, a missing one
``FileNotFoundError``. ``download=True`` fetches a dataset from its official address (checked by
SHA-256) only where one exists; see :data:`SOURCES`.

Typical word-level LM pipeline::

    corpus = rnncore.data.load_ptb("data/ptb")                   # ids int64 [N], vocab
    train = rnncore.data.batchify(corpus.train, batch_size=20)   # [T, 20]
    for x, y in rnncore.data.BPTTBatches(train, bptt=35):        # x, y [<=35, 20]
        ...

Pretrained word vectors (word2vec or GloVe text, .gz allowed) for a vocabulary::

    wv = rnncore.data.load_word_vectors("glove.6B.100d.txt", vocab)   # wv.vectors [V, 100]
    print(wv.summary())                                                # coverage
    emb = rnncore.nn.Embedding.from_pretrained(wv.vectors, freeze=False, padding_idx=vocab.pad_id)

Classification / tagging batches::

    vocab = Vocab.build(tokens for tokens, _ in train_set)
    ids = [vocab.encode(tokens) for tokens, _ in train_set]
    for idx in BucketBatchSampler([len(s) for s in ids], 32, seed=0):
        x, lengths = pad_sequences([ids[i] for i in idx], pad_id=vocab.pad_id)   # [T, B], [B]
"""

from __future__ import annotations

from ._io import DataFormatError, download_file
from .batching import BPTTBatches, BucketBatchSampler, batchify, pad_sequences
from .conll import CONLL2003_COLUMNS, load_conll2003, read_conll
from .sentiment import load_imdb, load_sst, read_imdb, read_sst, read_sst2_tsv
from .sources import SOURCES, download
from .synthetic import (
    adding_problem,
    anbn,
    copy_task,
    is_anbn,
    synthetic_sentiment,
    synthetic_tagging,
)
from .text import (
    LMCorpus,
    load_char_corpus,
    load_ptb,
    load_tiny_shakespeare,
    read_ptb,
    split_by_fractions,
    tokenize,
)
from .timeseries import (
    ForecastData,
    Scaler,
    SeriesTransform,
    holdout_size,
    load_airline_passengers,
    make_forecast_data,
    make_windows,
    read_csv_series,
    split_series,
)
from .translation import build_translation_vocabs, normalize_text, read_parallel, read_tatoeba
from .vocab import BOS, EOS, PAD, UNK, Vocab, build_label_vocab

__all__ = [
    # errors and downloads
    "DataFormatError",
    "SOURCES",
    "download",
    "download_file",
    # vocabulary
    "Vocab",
    "build_label_vocab",
    "PAD",
    "UNK",
    "BOS",
    "EOS",
    # language modelling
    "tokenize",
    "LMCorpus",
    "read_ptb",
    "load_ptb",
    "load_char_corpus",
    "load_tiny_shakespeare",
    "split_by_fractions",
    # batching
    "batchify",
    "BPTTBatches",
    "pad_sequences",
    "BucketBatchSampler",
    # classification
    "read_sst",
    "load_sst",
    "read_sst2_tsv",
    "read_imdb",
    "load_imdb",
    # tagging
    "read_conll",
    "load_conll2003",
    "CONLL2003_COLUMNS",
    # translation
    "normalize_text",
    "read_tatoeba",
    "read_parallel",
    "build_translation_vocabs",
    # time series
    "read_csv_series",
    "load_airline_passengers",
    "holdout_size",
    "split_series",
    "Scaler",
    "SeriesTransform",
    "make_windows",
    "ForecastData",
    "make_forecast_data",
    # synthetic
    "adding_problem",
    "copy_task",
    "anbn",
    "is_anbn",
    "synthetic_sentiment",
    "synthetic_tagging",
]

# issue 6: synthetic scenes for captioning, MNIST IDX files for sequential digits
from .mnist import load_mnist, pixel_sequences, read_idx, write_idx  # noqa: E402
from .scenes import (  # noqa: E402
    Scenes,
    read_caption_data,
    scene_features,
    synthetic_scenes,
    write_caption_data,
)

# issue 15: pretrained word vectors (word2vec / GloVe text files)
from .word_vectors import WordVectors, WordVectorsDimError, load_word_vectors  # noqa: E402

__all__ += [
    "load_word_vectors",
    "WordVectors",
    "WordVectorsDimError",
    "Scenes",
    "synthetic_scenes",
    "scene_features",
    "read_caption_data",
    "write_caption_data",
    "read_idx",
    "write_idx",
    "load_mnist",
    "pixel_sequences",
]
