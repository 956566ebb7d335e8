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
# # Lesson 8 — rnncore from PyTorch, and out to ONNX
#
# Two bridges to the rest of the ecosystem:
#
# 1. **`rnncore.torch`**: `rnncore.torch.LSTM`, `GRU` and `RNN` *are* `torch.nn.LSTM`, `GRU`
#    and `RNN` (subclasses: same constructor, parameter names, `state_dict`, call), whose
#    forward and backward run in rnncore's engine through a `torch.autograd.Function`. A PyTorch
#    program swaps one line and keeps its optimizers, `clip_grad_norm_`, `torch.save`.
# 2. **`rnncore.onnx`**: a trained rnncore model written as an ONNX graph whose recurrent
#    layers are ONNX's own `LSTM`/`GRU`/`RNN` operators, to run in onnxruntime (or anything
#    else that reads ONNX) without rnncore.
#
# PyTorch is optional for rnncore, and so are `onnx` and `onnxruntime` (`pip install
# "rnncore[onnx]"`): each part below is skipped with a note when its package is missing.

# %%
import time
from pathlib import Path

import numpy as np
import rnncore
from _course import output_dir, pick, plt, show
from rnncore import data, optim

try:
    import rnncore.torch as rtorch
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: the first part is skipped (pip install torch)")
try:
    import onnx
    import onnxruntime
    import rnncore.onnx
except ImportError:
    onnx = onnxruntime = None
    print(
        "onnx/onnxruntime are not installed: the second part is skipped "
        '(pip install "rnncore[onnx]")'
    )

# %% [markdown]
# ## Part 1 — the drop-in
#
# Same weights, same numbers: load a `torch.nn.LSTM`'s `state_dict` into `rtorch.LSTM` and
# compare outputs and every gradient (in float64 they agree to rounding).

# %%
if torch is not None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ref = torch.nn.LSTM(8, 32, num_layers=2, batch_first=True, bidirectional=True).double()
    ours = rtorch.LSTM(8, 32, num_layers=2, batch_first=True, bidirectional=True).double()
    ours.load_state_dict(ref.state_dict())
    print(isinstance(ours, torch.nn.LSTM), [n for n, _ in ours.named_parameters()][:4], "...")

    x = torch.randn(4, 20, 8, dtype=torch.float64, requires_grad=True)  # [B, T, I]
    outputs = {}
    for name, m in (("torch.nn", ref), ("rnncore.torch", ours)):
        x.grad = None
        m.zero_grad()
        y, (h, c) = m(x)
        (y.square().sum() + h.sum()).backward()
        outputs[name] = [y, x.grad] + [p.grad for p in m.parameters()]
    diff = max(float((a - b).abs().max().detach()) for a, b in zip(*outputs.values(), strict=True))
    print(f"largest difference over the output and every gradient: {diff:.1e}")

# %% [markdown]
# A whole PyTorch training loop with the drop-in inside a `torch.nn.Module`: the adding
# problem of Lesson 1, with `torch.optim.Adam` and `torch.nn.utils.clip_grad_norm_`.

# %%
if torch is not None:

    class AddingNet(torch.nn.Module):
        def __init__(self, hidden=32):
            super().__init__()
            self.rnn = rtorch.LSTM(2, hidden)  # was: torch.nn.LSTM(2, hidden)
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, x):  # x [T, B, 2]
            _, (h, _) = self.rnn(x)
            return self.head(h[-1]).squeeze(-1)

    net = AddingNet()
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    rng = np.random.default_rng(0)
    seq_len, losses = pick(30, 50), []
    for _ in range(pick(150, 1500)):
        xb, yb = (torch.from_numpy(a) for a in data.adding_problem(64, seq_len, seed=rng))
        loss = torch.nn.functional.mse_loss(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    print(f"mean loss over the last 50 steps: {np.mean(losses[-50:]):.4f} (guessing: ~0.167)")
    torch.save(net.state_dict(), output_dir() / "08_adding_net.pt")  # as any PyTorch model

# %% [markdown]
# How fast is it? One training step (forward and backward) of each layer on the same batch, one
# thread each (`bench/bench_torch_dropin.py` measures more shapes and a whole PTB recipe;
# `bench/results/torch_dropin.md`).

# %%
if torch is not None:
    T, B, I, H = pick(50, 100), 32, 64, 128
    timings = {}
    xs = torch.randn(T, B, I)
    for name, cls in (("torch.nn.LSTM", torch.nn.LSTM), ("rnncore.torch.LSTM", rtorch.LSTM)):
        m = cls(I, H, num_layers=2)
        runs = []
        for _ in range(pick(3, 10)):
            start = time.perf_counter()
            y, _ = m(xs)
            y.sum().backward()
            runs.append(time.perf_counter() - start)
        timings[name] = 1000 * float(np.median(runs[1:]))  # the first run warms up
        print(f"{name:20s} {timings[name]:7.1f} ms per training step")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
    ax1.plot(losses)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_title("AddingNet (rnncore.torch.LSTM) training loss")
    ax2.barh(list(timings), list(timings.values()))
    ax2.set_xlabel("ms per forward + backward (1 thread)")
    ax2.set_title(f"2-layer LSTM, T={T}, B={B}, I={I}, H={H}")
    show(fig, "08_torch")

# %% [markdown]
# ## Part 2 — exporting to ONNX
#
# Train a small sentiment classifier (Lesson 3's model, on synthetic sentences), then write it
# as ONNX. The graph takes `ids` int64 `[T, B]` (time-major) and `lengths` int64 `[B]` and
# returns the `logits` `[B, C]`; the recurrent layers become ONNX `LSTM` nodes with
# `sequence_lens`, both directions in one node.

# %%
from rnncore.models import SequenceClassifier  # noqa: E402
from rnncore.models.classifier import ClassifierBatch  # noqa: E402
from rnncore.train import Trainer  # noqa: E402

sentences = data.synthetic_sentiment(pick(1000, 4000), seed=0)
vocab = data.Vocab.build(tokens for tokens, _ in sentences)


def batches(examples, batch_size):
    out = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        ids, lengths = data.pad_sequences([vocab.encode(t) for t, _ in chunk], pad_id=vocab.pad_id)
        out.append(ClassifierBatch(ids, lengths, np.array([label for _, label in chunk])))
    return out


clf = SequenceClassifier(
    len(vocab), 16, 32, 2, num_layers=2, cell="lstm", bidirectional=True, seed=0
)
Trainer(
    clf,
    optim.Adam(clf.parameters(), lr=1e-2),
    epochs=pick(3, 5),
    clip_grad_norm=5.0,
    progress=False,
    log=None,
    seed=0,
).fit(batches(sentences, 32))
test = batches(data.synthetic_sentiment(300, seed=1), 300)[0]
clf.eval()
logits = clf(test.ids, test.lengths)
print(f"rnncore accuracy on 300 new sentences: {np.mean(logits.argmax(1) == test.labels):.3f}")

# %%
if onnx is not None:
    path = output_dir() / "08_sentiment.onnx"
    written = rnncore.onnx.export(clf, path)  # the list of files written
    graph = onnx.load(str(path)).graph
    ops = {}
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    print("files:", [Path(p).name for p in written])
    print("inputs:", [i.name for i in graph.input], " outputs:", [o.name for o in graph.output])
    print("operators:", dict(sorted(ops.items(), key=lambda kv: -kv[1])))

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # small graphs, like the engine: one thread
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(
        None, {"ids": test.ids.astype(np.int64), "lengths": test.lengths.astype(np.int64)}
    )
    print(
        f"onnxruntime vs rnncore: largest logit difference {np.abs(onnx_logits - logits).max():.1e}"
    )

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(logits[:, 1] - logits[:, 0], onnx_logits[:, 1] - onnx_logits[:, 0], s=8)
    ax.set_xlabel("rnncore: logit(positive) - logit(negative)")
    ax.set_ylabel("onnxruntime")
    ax.set_title("the same model, two runtimes")
    show(fig, "08_onnx")

# %% [markdown]
# **What you see.** The drop-in's numbers are PyTorch's to rounding, so a PyTorch program
# changes one line and keeps everything else (its speed relative to `torch.nn.LSTM` depends on
# the shape and the machine; the benchmark table is the reference). The ONNX graph's logits
# equal rnncore's to float32 rounding, and the graph is plain ONNX: `LSTM` nodes with
# `sequence_lens`, plus the embedding lookup (`Gather`), the pooling and the classifier.
#
# Every task model exports (`SequenceClassifier`, `KimCNN`, `LanguageModel` with its state in
# and out, `SequenceTagger` with its decoded tags, `Forecaster`, `SequenceRegressor`, and
# `Seq2Seq` as an encoder file plus a one-step decoder file). From the command line:
# `rnncore export runs/sst2 --onnx sst2.onnx`.
