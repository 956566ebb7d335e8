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
# # Lesson 3 — Sentiment: a 2-layer bidirectional GRU with gradient clipping (the homework)
#
# A many-to-one task: read a sentence, output one label. The network is the homework's:
#
# - an embedding of each word;
# - two stacked **bidirectional** GRU layers: one direction reads the sentence left to right,
#   the other right to left, so every position sees its whole context;
# - a pooling of the top layer's outputs over the sentence's real words (padding excluded: the
#   lengths go to the engine);
# - a linear layer to the two classes, trained with cross-entropy, Adam and gradient clipping.
#
# The data are the Stanford Sentiment Treebank's sentences (SST-2, binary) when
# `shared/data/sst2` is present, else a synthetic set whose label is decided by its sentiment
# words (`rnncore.data.synthetic_sentiment`).

# %%
import numpy as np
from _course import QUICK, data_dir, output_dir, pick, plt, show
from rnncore import data, optim
from rnncore.models import SequenceClassifier
from rnncore.models.classifier import ClassifierBatch
from rnncore.train import Trainer, load_checkpoint

SST = data_dir("sst2")
if SST is not None:
    splits = data.load_sst(SST)  # {"train", "dev", "test"}: lists of (tokens, label)
    source = f"SST-2 from {SST}"
else:
    splits = {
        "train": data.synthetic_sentiment(4000, seed=0),
        "dev": data.synthetic_sentiment(500, seed=1),
        "test": data.synthetic_sentiment(1000, seed=2),
    }
    source = "synthetic sentences (no shared/data/sst2)"
if QUICK:  # a small slice: seconds, not a result
    splits = {k: v[: (2000 if k == "train" else 400)] for k, v in splits.items()}
train_set, dev_set, test_set = splits["train"], splits["dev"], splits["test"]
print(f"{source}: {len(train_set)} train, {len(dev_set)} dev, {len(test_set)} test sentences")
for tokens, label in train_set[:3]:
    print(label, " ".join(tokens))

# %% [markdown]
# ## From words to batches
#
# A `Vocab` maps tokens to ids (`<pad>` is 0, `<unk>` stands for words not seen in training).
# A batch is time-major, like the engine: ids `[T, B]` padded past each sentence's length, the
# `lengths [B]` and the `labels [B]`. `BucketBatchSampler` groups sentences of similar length
# (less padding) and reshuffles at every pass, so the training batches are a function the
# `Trainer` calls once per epoch.

# %%
vocab = data.Vocab.build(tokens for tokens, _ in train_set)
print(f"vocabulary: {len(vocab)} entries; 'film' -> {vocab['film'] if 'film' in vocab else None}")
lengths = np.array([len(t) for t, _ in train_set])
print(f"sentence length: mean {lengths.mean():.1f}, max {lengths.max()}")


def make_batches(examples, batch_size, shuffle, seed=0):
    """A function returning one epoch of ClassifierBatch (ids [T, B], lengths [B], labels [B])."""
    ids = [vocab.encode(tokens) for tokens, _ in examples]
    labels = np.array([label for _, label in examples])
    sampler = data.BucketBatchSampler([len(s) for s in ids], batch_size, shuffle=shuffle, seed=seed)

    def epoch():
        for idx in sampler:  # each pass over the sampler is a new shuffle
            x, lens = data.pad_sequences([ids[i] for i in idx], pad_id=vocab.pad_id)
            yield ClassifierBatch(x, lens, labels[idx])

    return epoch


train_batches = make_batches(train_set, 64, shuffle=True)
dev_batches = list(make_batches(dev_set, 256, shuffle=False)())
test_batches = list(make_batches(test_set, 256, shuffle=False)())
first = dev_batches[0]
print("a batch:", first.ids.shape, first.lengths[:5], first.labels[:5])

# %% [markdown]
# ## The model and the training run
#
# `SequenceClassifier` is embedding → dropout → stacked RNN → pooling → dropout → linear.
# The `Trainer` runs the epochs: before each optimizer step it measures the global gradient
# norm and rescales the gradients when it exceeds `clip_grad_norm`; after each epoch it
# validates, keeps the best checkpoint (by validation accuracy) and records everything in
# `trainer.history`.

# %%
model = SequenceClassifier(
    vocab_size=len(vocab),
    embed_dim=pick(32, 64),
    hidden_size=pick(32, 64),
    num_classes=2,
    num_layers=2,
    cell="gru",
    bidirectional=True,
    pooling="mean",
    dropout=0.5,
    seed=0,
)
print(model)
print(f"{sum(p.data.size for p in model.parameters()):,} parameters")
run_dir = output_dir() / "03_sentiment"
trainer = Trainer(
    model,
    optim.Adam(model.parameters(), lr=2e-3),
    epochs=pick(3, 6),
    clip_grad_norm=5.0,
    monitor="accuracy",
    mode="max",
    checkpoint_dir=run_dir / "checkpoint",
    vocab=vocab,  # kept in every checkpoint, with the class names:
    extra={"labels": ["negative", "positive"]},  # load_checkpoint attaches both to the model
    progress=False,
    seed=0,
)
history = trainer.fit(train_batches, dev_batches)

# %%
epochs = [row["epoch"] for row in history]
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.8))
ax1.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
ax1.plot(epochs, [r["val_loss"] for r in history], "o-", label="dev")
ax1.set_title("cross-entropy")
ax2.plot(epochs, [r["train_accuracy"] for r in history], "o-", label="train")
ax2.plot(epochs, [r["val_accuracy"] for r in history], "o-", label="dev")
ax2.set_title("accuracy")
ax3.plot(epochs, [r["grad_norm"] for r in history], "o-", color="C2")
ax3.axhline(5.0, color="gray", ls="--", label="clip threshold")
ax3.set_title("mean gradient norm before clipping")
for ax in (ax1, ax2, ax3):
    ax.set_xlabel("epoch")
    ax.legend()
show(fig, "03_curves")

# %% [markdown]
# **What you see.** Both losses fall, the training loss faster: after about five epochs it
# passes below the dev loss, and from there the gap grows with every epoch, the model starting
# to memorise its training sentences (dropout 0.5 delays that; train longer to see the dev loss
# turn up). The dev accuracy decides which epoch the checkpoint keeps (`checkpoint/best`). The
# mean gradient norm stays far below the threshold: here clipping is a safety net for the rare
# exploding batch, not an everyday rescaling. On SST-2 this model reaches about 77% dev and test
# accuracy in six epochs (a minute at one thread); `rnncore train sentiment`'s larger default
# (128 units, LSTM) reaches 80% (`bench/results/sentiment_defaults.md`). Quick mode trains on a
# slice for three epochs only.

# %% [markdown]
# ## The best checkpoint, on the test set and on new sentences
#
# `load_checkpoint` rebuilds the model from its directory in inference mode, with the
# vocabulary and the class names the `Trainer` stored beside the weights: it predicts from raw
# text.

# %%
best = load_checkpoint(run_dir / "checkpoint" / "best").model
labels = np.concatenate([b.labels for b in test_batches])
pred = np.concatenate([best.predict(b.ids, b.lengths) for b in test_batches])
print(f"test accuracy {np.mean(pred == labels):.3f} (best epoch {trainer.best_epoch})")
sentences = [
    "a moving , beautifully acted film",
    "dull , predictable and far too long",
    "not bad at all",
    "i wanted to like it , but it is a mess",
]
if SST is None:  # the synthetic sentences' words
    sentences = ["a wonderful film", "the plot was dull", "good actor , bad story and awful music"]
probs = best.predict_proba(sentences)  # [4, 2]
for s, p in zip(sentences, probs, strict=True):
    print(f"{p[1]:.2f} positive   {s}")

# %%
confusion = np.zeros((2, 2), dtype=int)
np.add.at(confusion, (labels, pred), 1)
fig, ax = plt.subplots(figsize=(3.5, 3.5))
ax.imshow(confusion, cmap="Blues")
for i in range(2):
    for j in range(2):
        ax.text(j, i, confusion[i, j], ha="center", va="center")
ax.set_xticks([0, 1], best.labels)
ax.set_yticks([0, 1], best.labels)
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_title("test confusion matrix")
show(fig, "03_confusion")

# %% [markdown]
# ## Homework
#
# 1. Swap the GRU for an LSTM (`cell="lstm"`): accuracy, time per epoch, parameters?
# 2. One direction only (`bidirectional=False`) and `pooling="last"`: what does the model lose?
# 3. Train without clipping (`clip_grad_norm=None`) and with `clip_grad_norm=0.5`: look at the
#    third panel and at the dev curve.
# 4. A plain tanh RNN (`cell="rnn"`): how far back in a sentence can it still read?
# 5. Pretrained vectors: `data.load_word_vectors("glove.6B.100d.txt", vocab)` and
#    `model.embedding` from `nn.Embedding.from_pretrained(wv.vectors)`.
#
# The same run from the command line: `rnncore train sentiment --data ../shared/data/sst2 --out
# runs/sst2 --cell gru --layers 2 --bidirectional --clip 5`.
