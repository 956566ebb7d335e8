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
# # Lesson 1 — Vanishing and exploding gradients
#
# A recurrent network applies the same weights at every step, so backpropagation through time
# (BPTT) multiplies the error signal by the same kind of matrix again and again on its way back.
# For a tanh RNN, $h_t = \tanh(W_{ih} x_t + W_{hh} h_{t-1} + b)$, one step back is
#
# $$\frac{\partial L}{\partial h_{t-1}} = W_{hh}^\top \,\mathrm{diag}(1 - h_t^2)\,
#   \frac{\partial L}{\partial h_t},$$
#
# and $k$ steps back are a product of $k$ such Jacobians. Its norm behaves roughly like
# $\rho^k$: when the factors shrink vectors ($\rho < 1$) the signal from a late loss never
# reaches the early steps (it *vanishes*); when they stretch them ($\rho > 1$) it *explodes*.
#
# This lesson makes both visible with the engine's per-step gradient norms
# $\lVert \partial L / \partial h_t \rVert$, shows what gradient clipping does against
# explosions, and races a tanh RNN, an LSTM, a GRU and an IRNN on a task that needs a long
# memory.

# %%
import numpy as np
import rnncore
from _course import QUICK, pick, plt, show
from rnncore import nn, optim
from rnncore.data import adding_problem
from rnncore.models import SequenceRegressor
from rnncore.train import Trainer, step_gradient_norms

print(f"rnncore {rnncore.__version__}, engine {rnncore.engine_variant()}, quick mode: {QUICK}")

# %% [markdown]
# ## The task: the adding problem
#
# Each of $T$ steps carries a random value in $[0, 1)$ and a marker; exactly two steps are
# marked, one in each half of the sequence. The target, read after the last step, is the sum of
# the two marked values (Hochreiter & Schmidhuber 1997). Always answering 1.0 scores a mean
# squared error of about $1/6$: doing better means carrying a number across up to $T$ steps.

# %%
T = pick(50, 100)
x, y = adding_problem(1, T, seed=0)  # x [T, B, 2]: value, marker; y [B]
fig, ax = plt.subplots(figsize=(9, 2.5))
ax.bar(np.arange(T), x[:, 0, 0], color="lightgray", label="value")
marked = np.flatnonzero(x[:, 0, 1])
ax.bar(marked, x[marked, 0, 0], color="C3", label="marked")
ax.set_xlabel("time step t")
ax.set_title(f"one sequence of the adding problem: target = {y[0]:.3f}")
ax.legend()
show(fig, "01_adding_problem")

# %% [markdown]
# ## Measuring $\lVert \partial L / \partial h_t \rVert$
#
# Every recurrent layer can report, during its backward pass, the norm of the gradient that
# reaches each hidden state: set `record_step_grad_norms = True`, run forward and backward, read
# `step_grad_norms` (one row per layer and direction, one column per step). Here the loss sits
# on the last step only: a fixed unit vector as $\partial L / \partial y_T$.

# %%
x, _ = adding_problem(128, T, seed=1)
rnn = nn.RNN(2, 64, seed=0)  # a tanh RNN, PyTorch's initialisation
rnn.record_step_grad_norms = True
out, h_n = rnn(x)  # out [T, B, H]
dy = np.zeros_like(out)
dy[-1] = np.random.default_rng(0).standard_normal(dy[-1].shape)
dy[-1] /= np.linalg.norm(dy[-1])
rnn.backward(dy)
norms = rnn.step_grad_norms[0]  # [T]
print(f"||dL/dh_T|| = {norms[-1]:.3g},  ||dL/dh_0|| = {norms[0]:.3g}")

# %% [markdown]
# `rnncore.train.step_gradient_norms(layer, x)` does the same in one call (and puts the
# layer's gradients back as they were). Now scale the recurrent matrix: an orthogonal
# $W_{hh}$ times $\sigma$ has every singular value equal to $\sigma$.

# %%
fig, ax = plt.subplots(figsize=(8, 4))
for sigma in (0.5, 1.0, 1.5, 3.0):
    layer = nn.RNN(2, 64, seed=0, init="orthogonal")
    dict(layer.named_parameters())["weight_hh_l0"].data[...] *= sigma
    n = step_gradient_norms(layer, x)[0]
    ax.plot(np.arange(T), n / n[-1], label=f"tanh RNN, W_hh = {sigma} x orthogonal")
for scale in (0.9, 1.0, 1.05):
    layer = nn.RNN(2, 64, nonlinearity="relu", init="identity", seed=0)
    dict(layer.named_parameters())["weight_hh_l0"].data[...] *= scale
    n = step_gradient_norms(layer, x)[0]
    ax.plot(np.arange(T), n / n[-1], "--", label=f"ReLU RNN, W_hh = {scale} I")
ax.set_yscale("log")
ax.set_xlabel("time step t (the loss is at the last step)")
ax.set_ylabel("||dL/dh_t|| / ||dL/dh_T||")
ax.set_title("The error signal on its way back through time")
ax.legend(fontsize=8)
show(fig, "01_gradient_norms_by_scale")

# %% [markdown]
# **What you see.** Read each curve from right (the loss) to left (the first step). With small
# recurrent weights the signal dies geometrically: after a few dozen steps nothing is left (the
# $\sigma = 0.5$ curve leaves the plot where the gradient underflows to zero), so the first
# marked value can never influence the weights. With large ones it grows
# geometrically, by orders of magnitude. tanh's derivative $1 - h^2 \le 1$ only ever shrinks, so
# a tanh RNN needs $\sigma > 1$ to explode. The ReLU RNN with identity weights (the IRNN, Le et
# al. 2015) sits on the knife edge: $0.9\,I$ vanishes, $1.05\,I$ explodes, $I$ passes the signal
# back nearly unchanged.

# %% [markdown]
# ## Exploding gradients and clipping
#
# An exploding gradient does not announce itself: one batch suddenly yields a gradient a
# million times larger than the others, and a single SGD step throws the weights far away.
# Gradient-norm clipping (Mikolov 2012; Pascanu et al. 2013) rescales the whole gradient when its
# global norm exceeds a threshold: $g \leftarrow g \cdot \min(1, \theta / \lVert g \rVert)$. The
# direction stays, the step is bounded. `rnncore.optim.clip_grad_norm(params, max_norm)` does it
# in one engine call and returns the norm before clipping.
#
# Below: the same tanh RNN, started in the exploding regime ($\sigma = 1.5$), trained with SGD
# and momentum, without clipping and with two thresholds.


# %%
def train_sgd(max_norm, steps, lr=0.05, sigma=1.5, seq_len=50):
    """Per-step loss and pre-clip gradient norm of a tanh RNN trained with SGD + momentum."""
    model = SequenceRegressor(2, 64, 1, cell="rnn", init="orthogonal", seed=0)
    dict(model.named_parameters())["rnn.weight_hh_l0"].data[...] *= sigma
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    rng = np.random.default_rng(0)
    losses, grad_norms = [], []
    with np.errstate(all="ignore"):  # the unclipped run overflows on purpose
        for _ in range(steps):
            batch = adding_problem(32, seq_len, seed=rng)
            opt.zero_grad()
            losses.append(model.training_step(batch)["loss"])
            if max_norm is None:
                grad_norms.append(optim.grad_norm(model.parameters()))
            else:
                grad_norms.append(optim.clip_grad_norm(model.parameters(), max_norm))
            opt.step()
    return np.array(losses), np.array(grad_norms)


steps = pick(150, 300)
runs = {clip: train_sgd(clip, steps) for clip in (None, 1.0, 0.25)}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
for clip, (losses, grad_norms) in runs.items():
    label = "no clipping" if clip is None else f"clip_grad_norm {clip}"
    ax1.plot(losses, label=label)
    ax2.plot(grad_norms, label=label)
    diverged = np.flatnonzero(~np.isfinite(losses))
    note = f"NaN from step {diverged[0]}" if diverged.size else f"last loss {losses[-1]:.3f}"
    print(f"{label:22s} largest gradient norm {np.nanmax(grad_norms):9.3g}   {note}")
for ax, title in ((ax1, "training loss (MSE)"), (ax2, "gradient norm before clipping")):
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_title(title)
    ax.legend()
show(fig, "01_clipping")

# %% [markdown]
# **What you see.** Without clipping, the gradient norm climbs over many orders of magnitude
# within a few dozen steps, the loss follows, and the run ends in NaN (the curve stops). With
# clipping the same spikes still occur (right panel: the norm is measured *before* clipping)
# but each update is bounded, and the loss stays finite. Clipping treats the symptom, not the
# cause: the recurrent matrix still stretches signals. The cure for long memories is a
# different cell.

# %% [markdown]
# ## Which cell learns the adding problem?
#
# Four networks with the same budget, each trained with Adam and clipping 1.0 on fresh batches
# by the `Trainer` (one "epoch" is a block of batches, then validation):
#
# - a tanh RNN (PyTorch's initialisation);
# - an LSTM, forget-gate bias 1 (the forget gate starts open, so the cell state carries the
#   error signal back undamped);
# - a GRU;
# - an IRNN: ReLU RNN with $W_{hh} = I$.

# %%
hidden, batch_size = pick(32, 64), pick(32, 64)
steps_per_epoch, epochs = pick(25, 100), pick(6, 15)
valid = [adding_problem(500, T, seed=1000)]
test = [adding_problem(1000, T, seed=2000)]
baseline = float(np.mean((1.0 - test[0][1]) ** 2))
plans = {
    "RNN (tanh)": dict(cell="rnn", lr=5e-3),
    "LSTM": dict(cell="lstm", lr=5e-3, forget_bias=1.0),
    "GRU": dict(cell="gru", lr=5e-3),
    "IRNN": dict(cell="rnn_relu", init="identity", lr=1e-3),
}
results = {}
for name, plan in plans.items():
    plan = dict(plan)
    lr = plan.pop("lr")
    model = SequenceRegressor(2, hidden, 1, seed=0, **plan)
    rng = np.random.default_rng(1)

    def fresh_batches(rng=rng):
        return (adding_problem(batch_size, T, seed=rng) for _ in range(steps_per_epoch))

    trainer = Trainer(
        model,
        optim.Adam(model.parameters(), lr=lr),
        epochs=epochs,
        clip_grad_norm=1.0,
        progress=False,
        log=None,
        seed=0,
    )
    history = trainer.fit(fresh_batches, valid)
    norms = step_gradient_norms(model, (test[0][0][:, :256], test[0][1][:256]))["rnn"][0]
    results[name] = dict(history=history, test=trainer.evaluate(test)["loss"], norms=norms)
    print(f"{name:11s} test MSE {results[name]['test']:.4f}  (always 1.0: {baseline:.4f})")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
for name, r in results.items():
    seen = [row["epoch"] * steps_per_epoch for row in r["history"]]
    ax1.plot(seen, [row["val_loss"] for row in r["history"]], marker="o", ms=3, label=name)
    ax2.plot(np.arange(T), np.where(r["norms"] > 0, r["norms"], np.nan), label=name)
ax1.axhline(baseline, color="gray", ls="--", label="always 1.0")
ax1.set_yscale("log")
ax1.set_xlabel("training step")
ax1.set_title(f"validation MSE, T = {T}")
ax1.legend()
ax2.set_yscale("log")
ax2.set_xlabel("time step t")
ax2.set_title("||dL/dh_t|| after training")
ax2.legend()
show(fig, "01_cells_race")

# %% [markdown]
# **What you see.** Given enough steps (run without quick mode: 1500 steps each, about a
# minute and a half), the GRU and then the LSTM drop far below the dashed baseline, while the tanh
# RNN stays at the level of guessing: its gradient curve (right) falls by more than ten orders of
# magnitude towards the early steps, while the gated cells' curves stay nearly flat. The IRNN's
# gradient reaches back too, but it learns slowly (a small learning rate keeps its identity
# recurrence stable), and `rnncore demo` gives it 5000 steps. The gates give the error signal an
# additive path through time (the LSTM's $c_t = f_t \odot c_{t-1} + \dots$ with
# $f_t \approx 1$), which is the subject of Lesson 2.
#
# In quick mode the budget is a few hundred steps: the curves are only a first look.
#
# **Try:** a longer sequence (`T = 200`); the LSTM without `forget_bias`; the IRNN with a larger
# learning rate; `rnncore demo` runs the full version of this race in about two minutes.
