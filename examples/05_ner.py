# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 5 — Named entities with BIO tags
#
# A many-to-many task: one tag per word. Entities span several words, so the tags say where
# each one **B**egins, which words are **I**nside it and which are **O**utside any:
#
# ```
# EU    rejects German call to boycott British lamb .
# B-ORG O       B-MISC O    O  O       B-MISC  O    O
# ```
#
# The tagger reads the sentence with a bidirectional LSTM (every word sees its left and right
# context) and classifies each position. Each word's characters go through a small
# bidirectional LSTM of their own (Lample et al. 2016): capitals, suffixes and unknown words
# become visible. Scores are per entity, as conlleval counts them: an entity is right only
# when its type, start and end all are.
#
# Data: CoNLL-2003 English when `shared/data/conll2003` is present, else synthetic sentences
# with persons, places and organisations from small gazetteers.

# %%
from collections import Counter

from _course import QUICK, data_dir, pick, plt, show
from rnncore import data, metrics, optim
from rnncore.models import SequenceTagger
from rnncore.models.tagger import IGNORE, TaggerBatch
from rnncore.train import Trainer

CONLL = data_dir("conll2003")
if CONLL is not None:
    splits = data.load_conll2003(CONLL)  # {"train", "valid", "test"}: (tokens, NER tags)
    source = f"CoNLL-2003 from {CONLL}"
else:
    splits = {
        "train": data.synthetic_tagging(3000, seed=0),
        "valid": data.synthetic_tagging(500, seed=1),
        "test": data.synthetic_tagging(500, seed=2),
    }
    source = "synthetic sentences (no shared/data/conll2003)"
if QUICK:
    splits = {k: v[: (4000 if k == "train" else 500)] for k, v in splits.items()}
train_set, valid_set, test_set = splits["train"], splits["valid"], splits["test"]
print(f"{source}: {len(train_set)} / {len(valid_set)} / {len(test_set)} sentences")
tokens, tags = train_set[0]
print(list(zip(tokens, tags, strict=True)))
counts = Counter(t for _, ts in train_set for t in ts)
print("tag counts:", dict(counts.most_common()))

# %% [markdown]
# ## Vocabularies and batches
#
# Three vocabularies: words (looked up lower-cased; the characters keep the case), characters,
# and tags (no `<unk>`: an unknown tag is an error). Padded positions get the tag id -100,
# which the loss ignores. The characters of the batch's words form one more batch, one column
# per word.

# %%
vocab = data.Vocab.build([t.lower() for t in toks] for toks, _ in train_set)
char_vocab = data.Vocab.build(w for toks, _ in train_set for w in toks)
tag_vocab = data.build_label_vocab((ts for _, ts in train_set), pad=False)
print(f"{len(vocab)} words, {len(char_vocab)} characters, tags {tag_vocab.itos}")


def make_batches(sentences, batch_size, shuffle):
    """A function returning one epoch of TaggerBatch."""
    words = [vocab.encode([t.lower() for t in toks]) for toks, _ in sentences]
    sampler = data.BucketBatchSampler([len(w) for w in words], batch_size, shuffle=shuffle)

    def epoch():
        for idx in sampler:
            ids, lengths = data.pad_sequences([words[i] for i in idx], pad_id=vocab.pad_id)
            tag_ids, _ = data.pad_sequences(
                [tag_vocab.encode(sentences[i][1]) for i in idx], pad_id=IGNORE
            )
            chars, char_lengths = data.pad_sequences(
                [char_vocab.encode(w) for i in idx for w in sentences[i][0]],
                pad_id=char_vocab.pad_id,
            )
            yield TaggerBatch(ids, lengths, tag_ids, chars, char_lengths)

    return epoch


train_batches = make_batches(train_set, 32, shuffle=True)
valid_batches = list(make_batches(valid_set, 128, shuffle=False)())
test_batches = list(make_batches(test_set, 128, shuffle=False)())
b = valid_batches[0]
print(f"ids {b.ids.shape}, tags {b.tags.shape}, chars {b.chars.shape} (one column per word)")

# %% [markdown]
# ## Training
#
# The validation step decodes the tags (the most likely tag per word, then a BIO repair: an
# `I-X` that follows `O` or another type becomes `B-X`, as conlleval reads it) and counts
# entities, so the history holds the entity F1 of every epoch; the `Trainer` keeps the best.

# %%
model = SequenceTagger(
    len(vocab),
    embed_dim=pick(32, 100),
    hidden_size=pick(32, 100),
    num_tags=len(tag_vocab),
    cell="lstm",
    bidirectional=True,
    dropout=0.5,
    tag_names=tag_vocab.itos,
    char_vocab_size=len(char_vocab),
    char_embed_dim=pick(16, 25),
    char_hidden_size=pick(16, 25),
    seed=0,
)
trainer = Trainer(
    model,
    optim.Adam(model.parameters(), lr=pick(1e-2, 3e-3)),
    epochs=pick(4, 6),
    clip_grad_norm=5.0,
    monitor="f1",
    mode="max",
    progress=False,
    seed=0,
)
history = trainer.fit(train_batches, valid_batches)

# %% [markdown]
# ## Entity scores on the test set, per type

# %%
true_tags, pred_tags = [], []
for batch in test_batches:
    pred = model.predict(batch.ids, batch.lengths, batch.chars, batch.char_lengths)  # [T, B]
    true_tags += model.to_tags(batch.tags, batch.lengths)
    pred_tags += model.to_tags(pred, batch.lengths)
scores = metrics.chunk_scores(true_tags, pred_tags)
print(f"test: precision {scores.precision:.3f}  recall {scores.recall:.3f}  F1 {scores.f1:.3f}")
for typ, s in scores.per_type.items():
    print(f"  {typ:5s} P {s.precision:.3f}  R {s.recall:.3f}  F1 {s.f1:.3f}  ({s.n_true} entities)")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
epochs = [r["epoch"] for r in history]
ax1.plot(epochs, [r["val_f1"] for r in history], "o-", label="entity F1")
ax1.plot(epochs, [r["val_accuracy"] for r in history], "o-", label="token accuracy")
ax1.set_xlabel("epoch")
ax1.set_title("validation")
ax1.legend()
types = list(scores.per_type)
ax2.bar(types, [scores.per_type[t].f1 for t in types])
ax2.set_ylim(0, 1)
ax2.set_title("test F1 per entity type")
show(fig, "05_scores")

# %% [markdown]
# **What you see.** Token accuracy is high from the first epoch (most words are `O`, and
# always answering `O` already scores about 83% on CoNLL), which is why it is the wrong
# measure: the entity F1 is the one that moves. Persons and locations come first; `MISC`
# (nationalities, events, ...) and `ORG` are the hardest types. On the full CoNLL-2003,
# `rnncore train tagger`'s defaults reach a test F1 of 0.81 in ten epochs, 0.83-0.84 with the
# CRF (`bench/results/ner_crf.md`); Lample et al. (2016) report 0.91 with pretrained word
# vectors. This notebook's six epochs (without quick mode, two minutes) reach about 0.77; quick
# mode trains on a slice for a few epochs.
#
# ## Tagging raw text
#
# With its vocabularies attached, the model tags raw text (`rnncore train tagger` stores them
# in the checkpoint, and `load_checkpoint` attaches them).

# %%
model.vocab, model.char_vocab, model.lowercase = vocab, char_vocab, True
examples = (
    ["John Smith visited Paris with the United Nations .", "Germany beat Italy in Rome ."]
    if CONLL is not None
    else ["john met alice smith in new york today", "the report from acme corp visited tokyo"]
)
for tagged in model.predict_tags(examples):
    print("  ".join(f"{w}/{t}" for w, t in tagged))

# %% [markdown]
# **Try:** `crf=True`, a linear-chain CRF on top (trained on whole tag sequences, decoded by
# Viterbi, with the BIO transitions that cannot happen forbidden); the tagger without
# character features (`char_vocab_size=None`, and no `chars` in the batches); a GRU. The
# command-line version: `rnncore train tagger --data ../shared/data/conll2003 --out runs/ner`.
