"""Small models and data for the training-toolkit tests: an Embedding -> RNN -> Linear language
model with truncated BPTT, written out by hand (the tests must not depend on rnncore.models)."""

from __future__ import annotations

import math

import numpy as np
import rnncore
import rnncore.models
from rnncore import nn
from rnncore.train import StateCarrier

_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@rnncore.models.register
class TinyLM(nn.Module):
    """Embedding -> RNN/LSTM/GRU -> Dropout -> Linear; stateful (truncated BPTT) training.

    Shapes: batch (x, y) of int ids [T, B]; logits [T, B, V].
    """

    MODEL_TYPE = "test_tiny_lm"

    def __init__(
        self,
        vocab_size=8,
        embed_dim=8,
        hidden_size=16,
        num_layers=1,
        cell="lstm",
        dropout=0.0,
        tie_weights=False,
        dtype="float32",
        seed=0,
        reset_token=None,
    ):
        super().__init__()
        self._config = dict(
            vocab_size=vocab_size, embed_dim=embed_dim, hidden_size=hidden_size,
            num_layers=num_layers, cell=cell, dropout=dropout, tie_weights=tie_weights,
            dtype=dtype, seed=seed, reset_token=reset_token,
        )  # fmt: skip
        self.embedding = nn.Embedding(vocab_size, embed_dim, dtype=dtype, seed=seed)
        self.rnn = _CELLS[cell](
            embed_dim, hidden_size, num_layers, dropout=dropout, dtype=dtype, seed=seed + 1
        )
        self.drop = nn.Dropout(dropout, seed=seed + 2)
        self.decoder = nn.Linear(hidden_size, vocab_size, dtype=dtype, seed=seed + 3)
        if tie_weights:
            # The decoder computes with the embedding's matrix (and accumulates into its grad).
            self.decoder._parameters[0] = self.embedding.weight
            self.decoder.weight = self.embedding.weight
        self.crit = nn.CrossEntropyLoss(class_axis=-1)
        self.carrier = StateCarrier(reset_token)
        self.step_losses = []

    def config(self):
        return dict(self._config)

    def parameters(self):
        seen, out = set(), []
        for p in super().parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    def on_epoch_start(self, training):
        self.carrier.reset()

    def forward(self, x, state=None):
        h, final = self.rnn(self.embedding(x), state=state)
        return self.decoder(self.drop(h)), final

    def training_step(self, batch):
        x, y = batch
        logits, final = self.forward(x, self.carrier.get(x.shape[1]))
        self.carrier.update(final, last_tokens=x[-1])
        loss = self.crit(logits, y)
        dh = self.drop.backward(self.decoder.backward(self.crit.backward()))
        dx, _ = self.rnn.backward(dh)  # the initial state's gradient stops here (truncation)
        self.embedding.backward(dx)
        self.step_losses.append(loss)
        return {"loss": loss, "count": self.crit.count}

    def validation_step(self, batch):
        x, y = batch
        logits, final = self.forward(x, self.carrier.get(x.shape[1]))
        self.carrier.update(final, last_tokens=x[-1])
        loss = self.crit(logits, y)
        return {"loss_sum": loss * self.crit.count, "count": self.crit.count}

    def epoch_metrics(self, sums):
        loss = sums["loss_sum"] / sums["count"]
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0))}


def anbn_stream(n, *, max_n=8, seed=0):
    """Token ids of n strings a^k b^k followed by <eos>: a=0, b=1, <eos>=2."""
    ids = []
    for s in rnncore.data.anbn(n, max_n=max_n, seed=seed):
        ids.extend(0 if t == "a" else 1 for t in s)
        ids.append(2)
    return np.asarray(ids, dtype=np.int64)


def lm_batches(ids, batch_size, bptt):
    """BPTT windows (x, y) [<= bptt, B] over the stream cut into batch_size columns."""
    return rnncore.data.BPTTBatches(rnncore.data.batchify(ids, batch_size), bptt)
