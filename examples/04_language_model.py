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
# # Lesson 4 — A language model: perplexity, sampling and the n-gram baseline
#
# A language model gives the probability of the next word given the words before it,
# $p(w_t \mid w_{<t})$. Its score on held-out text is the **perplexity**,
#
# $$\mathrm{PPL} = \exp\Big(-\frac{1}{N}\sum_{t=1}^{N} \log p(w_t \mid w_{<t})\Big),$$
#
# the number of equally likely words the model is, on average, hesitating between. We train an
# LSTM language model with truncated backpropagation through time, draw sentences from it, and
# compare it with the count-based model it replaced: a Kneser-Ney smoothed n-gram model. Then we
# mix the two, as Mikolov et al. (2011) did.
#
# Data: the Penn Treebank (Mikolov's split, 10k words) when `shared/data/ptb` is present, else
# sentences from a small synthetic grammar.

# %%
import math

import numpy as np
from _course import QUICK, data_dir, pick, plt, show
from rnncore import data, optim
from rnncore.models import LanguageModel
from rnncore.ngram import KneserNeyLM, split_sentences
from rnncore.train import Trainer


def synthetic_corpus(n_sentences, seed):
    """Sentences of a small grammar: subject-verb agreement across an optional phrase."""
    rng = np.random.default_rng(seed)
    nouns = ["dog", "cat", "bird", "teacher", "child", "farmer", "robot", "river"]
    verbs = ["sees", "likes", "follows", "finds", "hears", "paints"]
    adjectives = ["big", "small", "old", "red", "happy", "quiet"]
    places = ["near the house", "in the garden", "by the river", "on the hill"]

    def noun_phrase():
        words = [str(rng.choice(["the", "a"]))]
        if rng.random() < 0.4:
            words.append(str(rng.choice(adjectives)))
        plural = rng.random() < 0.4
        noun = str(rng.choice(nouns))
        words.append(noun + "s" if plural else noun)
        if plural and words[0] == "a":
            words[0] = "some"
        return words, plural

    sentences = []
    for _ in range(n_sentences):
        subject, plural = noun_phrase()
        if rng.random() < 0.3:
            subject += str(rng.choice(places)).split()
        verb = str(rng.choice(verbs))
        verb = verb[:-1] if plural else verb  # the dogs see / the dog sees
        obj, _ = noun_phrase()
        sentences.append(subject + [verb] + obj)
    return sentences


PTB = data_dir("ptb")
if PTB is not None:
    vocab = None  # the training file's 10,000 words
    if QUICK:  # a smaller softmax: only the 3,000 most frequent words, the others are <unk>
        train_sents = data.read_ptb(PTB / "ptb.train.txt")
        vocab = data.Vocab.build(train_sents, max_size=3000, pad=False, unk=True, eos=True)
    # id streams (sentences joined, <eos> after each) and the vocabulary
    corpus = data.load_ptb(PTB, vocab=vocab)
    source = f"Penn Treebank from {PTB}"
else:
    sents = {
        s: synthetic_corpus(n, i)
        for i, (s, n) in enumerate([("train", 20000), ("valid", 2000), ("test", 2000)])
    }
    vocab = data.Vocab.build(sents["train"], pad=False, unk=True, eos=True)
    streams = {
        s: vocab.encode([w for sent in v for w in sent + ["<eos>"]]) for s, v in sents.items()
    }
    corpus = data.LMCorpus(streams["train"], streams["valid"], streams["test"], vocab)
    source = "a synthetic grammar (no shared/data/ptb)"
vocab = corpus.vocab
eos = vocab.eos_id


def first_sentences(stream, n_tokens):
    """The longest prefix of whole sentences with at most n_tokens tokens."""
    ends = np.flatnonzero(stream[:n_tokens] == eos)
    return stream[: ends[-1] + 1]


train_ids = first_sentences(corpus.train, pick(40_000, 200_000))
valid_ids = first_sentences(corpus.valid, pick(8_000, 40_000))
print(
    f"{source}: vocabulary {len(vocab)}, training on {train_ids.size:,} of "
    f"{corpus.train.size:,} tokens, validating on {valid_ids.size:,}"
)
print(" ".join(vocab.decode(train_ids[:40])))

# %% [markdown]
# ## Truncated BPTT batches
#
# The training stream is cut into `B` long columns (`batchify`), read down in windows of
# `bptt` steps (`BPTTBatches`): batch $k+1$ continues each column where batch $k$ stopped, so
# the model carries its hidden state from one window to the next, but the gradient stops at
# the window's border. That is **truncated** backpropagation through time: memory and compute
# per update are bounded by the window, while the state still flows through the whole text.

# %%
batch_size, bptt = 20, 35
train_batches = data.BPTTBatches(data.batchify(train_ids, batch_size), bptt)
valid_batches = data.BPTTBatches(data.batchify(valid_ids, 10), bptt)
x, y = next(iter(train_batches))
print(f"{len(train_batches)} windows per epoch; x {x.shape}, y {y.shape} (y is x shifted by one)")
print("column 0, inputs :", " ".join(vocab.decode(x[:8, 0])))
print("column 0, targets:", " ".join(vocab.decode(y[:8, 0])))

# %% [markdown]
# ## The LSTM language model
#
# `LanguageModel` is embedding → LSTM layers → linear decoder over the vocabulary. Its
# `training_step` carries the state across windows (`LanguageModel.on_epoch_start` resets it),
# and its `epoch_metrics` report the perplexity.

# %%
size = pick(64, 128)
model = LanguageModel(
    len(vocab),
    size,
    size,
    num_layers=pick(1, 2),
    cell="lstm",
    dropout=pick(0.0, 0.3),
    tie_weights=True,
    seed=0,
)
trainer = Trainer(
    model,
    optim.Adam(model.parameters(), lr=pick(5e-3, 2e-3)),
    epochs=pick(2, 3),
    clip_grad_norm=1.0,
    progress=False,
    seed=0,
)
history = trainer.fit(train_batches, valid_batches)

# %% [markdown]
# ## Sampling
#
# `model.sample(prompt, n, temperature, top_k)` feeds the prompt, then draws each next word
# from the model's distribution (its logits divided by the temperature before the softmax)
# and feeds it back. A low temperature plays safe and repeats itself; a high one invents.

# %%
model.eval()
prompt = vocab.encode(["<eos>"])  # the start of a sentence
for temperature in (0.0, 0.7, 1.0, 1.5):
    words = vocab.decode(model.sample(prompt, 25, temperature=temperature, seed=1))
    print(f"T={temperature:.1f}: {' '.join(words)}")

# %% [markdown]
# ## The baseline: interpolated modified Kneser-Ney
#
# `KneserNeyLM(order)` counts the n-grams of the training sentences and smooths them (Chen &
# Goodman 1998): it discounts every count a little and gives that mass to the lower orders,
# where a word counts by the number of *different contexts* it follows. Counting takes seconds.

# %%
train_sents = split_sentences(train_ids, eos)
valid_sents = split_sentences(valid_ids, eos)
ngram_ppl = {}
for order in (1, 2, 3, 4, 5):
    kn = KneserNeyLM(order).fit(train_sents, vocab)
    ngram_ppl[order] = kn.perplexity(valid_sents)
    print(
        f"KN{order}: validation perplexity {ngram_ppl[order]:8.1f}   {kn.ngrams[-1]:,} "
        f"{order}-grams"
    )

# %% [markdown]
# ## The same tokens, two models, and their mix
#
# To compare on exactly the same tokens, score every validation token with both models: the
# LSTM reads the stream from a sentence start, one window at a time with its state carried;
# `kn.token_logprobs` gives the n-gram model's log-probability of each token. Interpolating
# the two probabilities, $p = \lambda\, p_\mathrm{LSTM} + (1 - \lambda)\, p_\mathrm{KN}$,
# usually beats both: they make different mistakes.


# %%
def lstm_token_logprobs(model, stream, window=500):
    """log p(w_t | w_<t) of every token of the stream, read from a sentence start."""
    inputs = np.concatenate([[eos], stream[:-1]])
    out, state = [], None
    for i in range(0, stream.size, window):
        logits, state = model(inputs[i : i + window, None], state)  # [W, 1, V]
        logits = logits[:, 0].astype(np.float64)
        m = logits.max(axis=1, keepdims=True)
        log_z = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        out.append(logits[np.arange(logits.shape[0]), stream[i : i + window]] - log_z)
    return np.concatenate(out)


kn = KneserNeyLM(pick(3, 5)).fit(train_sents, vocab)
lp_lstm = lstm_token_logprobs(model, valid_ids)
lp_kn = kn.token_logprobs(valid_sents)
lambdas = np.linspace(0.0, 1.0, 21)
mixed = [
    math.exp(
        -np.mean(
            np.logaddexp(np.log(max(lam, 1e-12)) + lp_lstm, np.log(max(1 - lam, 1e-12)) + lp_kn)
        )
    )
    for lam in lambdas
]
best = int(np.argmin(mixed))
print(
    f"LSTM {math.exp(-lp_lstm.mean()):.1f}   KN{kn.order} {math.exp(-lp_kn.mean()):.1f}   "
    f"mix (lambda={lambdas[best]:.2f}) {mixed[best]:.1f}"
)

# %%
fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.8))
epochs = [r["epoch"] for r in history]
ax1.plot(epochs, [math.exp(r["train_loss"]) for r in history], "o-", label="train")
ax1.plot(epochs, [r["val_ppl"] for r in history], "o-", label="validation")
ax1.set_xlabel("epoch")
ax1.set_title("LSTM perplexity")
ax1.legend()
ax2.bar([f"KN{k}" for k in ngram_ppl], list(ngram_ppl.values()), color="C7")
ax2.bar(["LSTM"], [math.exp(-lp_lstm.mean())], color="C0")
ax2.bar(["mix"], [mixed[best]], color="C2")
ax2.set_title("validation perplexity")
ax3.plot(lambdas, mixed, "o-", ms=3)
ax3.set_xlabel("lambda (weight of the LSTM)")
ax3.set_title(f"lambda * LSTM + (1 - lambda) * KN{kn.order}")
show(fig, "04_perplexity")

# %% [markdown]
# **What you see.** The unigram model (KN1) only knows word frequencies; each order of context
# cuts the perplexity, with diminishing returns beyond three or four words (the counts become
# too sparse). The LSTM has no fixed context length at all. On the full Penn Treebank the
# lecture's table (`bench/results/ptb_table.md`) reads: KN5 141, a tanh RNN 155, their mix 118,
# an LSTM mixed with KN5 99. In this lesson the LSTM sees a fraction of the data for a few
# epochs, so where it lands relative to KN depends on the budget (without quick mode, on 200k
# tokens: KN5 262, the LSTM 397 after three epochs, their mix 248); the mix usually beats both
# (the curve dips between its ends), because the two models make different mistakes.
#
# ## What does each model expect next?

# %%
context = ["the", "company", "said"] if PTB is not None else ["the", "dogs"]
ids = vocab.encode(["<eos>"] + context)
logits, _ = model(ids[:, None])
p_lstm = np.exp(logits[-1, 0] - logits[-1, 0].max())
p_lstm /= p_lstm.sum()
p_kn = np.exp(kn.log_probs(ids))
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
for ax, (name, p) in zip(axes, (("LSTM", p_lstm), (f"KN{kn.order}", p_kn)), strict=True):
    top = np.argsort(p)[::-1][:10]
    ax.barh([vocab.token(int(i)) for i in top][::-1], p[top][::-1])
    ax.set_title(f"{name}: p(next | '{' '.join(context)}')")
show(fig, "04_next_word")

# %% [markdown]
# **Try:** a GRU (`cell="gru"`); more epochs; `dropout=0.5` on a larger model; sampling with
# `top_k=10`. From the command line the full recipe is `rnncore train lm --data
# ../shared/data/ptb --out runs/ptb` and `rnncore train ngram --data ../shared/data/ptb --out
# runs/kn5`, then `rnncore eval runs/ptb --data ../shared/data/ptb --interpolate runs/kn5`.
