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
# # Lesson 2 — The LSTM, built one gate at a time
#
# Lesson 1 ended with a question: *why* do the gated cells carry the error signal back when the
# tanh RNN cannot? Here we build the LSTM one piece at a time and watch what each piece adds.
# With a state $s$, a candidate $r_t = \tanh(U_r x_t + V_r s_{t-1} + b_r)$ and gates
# $g_t = \sigma(U_g x_t + V_g s_{t-1} + b_g)$:
#
# | cell | update | what it adds |
# |---|---|---|
# | tanh RNN | $s_t = \tanh(U x_t + V s_{t-1} + b)$ | |
# | residual | $s_t = s_{t-1} + r_t$ | an identity path for the gradient |
# | + input gate | $s_t = s_{t-1} + i_t \odot r_t$ | write access: write only where chosen |
# | + forget gate | $s_t = f_t \odot s_{t-1} + i_t \odot r_t$ | erase access |
# | + output gate | $h_t = o_t \odot \tanh(s_t)$, the same $s_t$ (the LSTM's $c_t$) | read access |
#
# `rnncore.nn.GatedRNN(input_size, hidden_size, gates=...)` is each of these cells, run by the
# same C++ engine as the LSTM (fused forward and backward, lengths, layers, directions), and
# the models take their names: `cell="gated-residual"`, `"gated-input"`, `"gated-forget"`.

# %%
import numpy as np
import rnncore
from _course import QUICK, pick, plt, show
from rnncore import nn, optim
from rnncore.data import adding_problem
from rnncore.models import SequenceRegressor
from rnncore.train import Trainer, step_gradient_norms

print(f"rnncore {rnncore.__version__}, quick mode: {QUICK}")
GATES = {
    "residual": (),
    "+ input": ("input",),
    "+ forget": ("input", "forget"),
    "+ output (LSTM)": ("input", "forget", "output"),
}

# %% [markdown]
# ## All three gates *are* the LSTM
#
# With every gate, `GatedRNN` stores its weights in PyTorch's LSTM layout (gate blocks input,
# forget, candidate, output), so an LSTM's `state_dict` loads into it and both compute the same
# numbers.

# %%
x, _ = adding_problem(8, 30, seed=0)
lstm = nn.LSTM(2, 16, seed=1)
full = nn.GatedRNN(2, 16, gates=("input", "forget", "output"), seed=2)
full.load_state_dict(lstm.state_dict())
y_lstm, _ = lstm(x)
y_full, _ = full(x)
print("largest difference:", float(np.abs(y_lstm - y_full).max()))
for name, gates in GATES.items():
    layer = nn.GatedRNN(2, 16, gates=gates, seed=0)
    shapes = {n: p.shape for n, p in layer.named_parameters()}
    print(f"{name:16s} weight_hh {shapes['weight_hh_l0']}  (one block of 16 rows per gate)")

# %% [markdown]
# ## What each cell does to its state and to the gradient
#
# Run every untrained cell over a long sequence and look at two things: the size of its state
# $\lVert s_t \rVert$ as time goes on, and the gradient $\lVert \partial L / \partial s_t \rVert$
# that reaches step $t$ from a loss at the last step.

# %%
T_long = pick(100, 200)
x, _ = adding_problem(128, T_long, seed=1)
cells = {"tanh RNN": nn.RNN(2, 64, seed=0)}
for name, gates in GATES.items():
    fb = 1.0 if "forget" in gates else None  # the forget gate starts open
    cells[name] = nn.GatedRNN(2, 64, gates=gates, forget_bias=fb, seed=0)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
for name, layer in cells.items():
    layer.eval()
    y, _ = layer(x)  # y [T, B, H]: the state s_t (h_t for the LSTM)
    ax1.plot(np.linalg.norm(y, axis=-1).mean(axis=1), label=name)
    layer.train()
    g = step_gradient_norms(layer, x)[0]
    ax2.plot(np.where(g > 0, g, np.nan), label=name)
ax1.set_title("||s_t||, the state's size (mean over the batch)")
ax1.set_xlabel("time step t")
ax1.legend(fontsize=8)
ax2.set_yscale("log")
ax2.set_title("||dL/ds_t||, loss at the last step")
ax2.set_xlabel("time step t")
show(fig, "02_state_and_gradient")

# %% [markdown]
# **What you see.** The tanh RNN's state stays bounded but its gradient dies within a few dozen
# steps (its curve leaves the plot where the gradient underflows). The residual cell is the
# opposite: the identity path ($\partial s_t / \partial s_{t-1} = I + \dots$) carries the
# gradient back to the very first step, even amplified, but every step adds to the state, which
# grows without bound. The input gate only slows the growth: what was written can never leave.
# The forget gate bounds the state (the cell can now erase) and, with its bias at 1, still
# passes the gradient back. The LSTM's curve is the gradient at its *output* $h_t$: at
# initialisation its forget gates are only $\sigma(1) \approx 0.73$ open, and the signal decays
# step after step; training learns to hold them open where the task needs a memory (see the
# gradient column of the table below). The output gate changes what the outside sees
# ($h = o \odot \tanh(c)$, always in $(-1, 1)$), not the memory itself.

# %% [markdown]
# ## Training each cell on the adding problem
#
# The same budget for each (Adam, clipping 1.0, fresh batches every step), as
# `rnncore demo gates` does with a larger one.

# %%
T = pick(40, 100)
hidden, batch_size = pick(32, 64), 64
steps_per_epoch, epochs = pick(25, 100), pick(6, 30)
valid = [adding_problem(500, T, seed=1000)]
test = [adding_problem(1000, T, seed=2000)]
baseline = float(np.mean((1.0 - test[0][1]) ** 2))
names = {
    "tanh RNN": "rnn",
    "residual": "gated-residual",
    "+ input": "gated-input",
    "+ forget": "gated-forget",
    "+ output (LSTM)": "lstm",
}
curves, table = {}, []
for name, cell in names.items():
    fb = 1.0 if cell in ("gated-forget", "lstm") else None
    model = SequenceRegressor(2, hidden, 1, cell=cell, forget_bias=fb, seed=0)
    rng = np.random.default_rng([0, 1])  # the training batches of `rnncore demo gates`

    def fresh_batches(rng=rng):
        return (adding_problem(batch_size, T, seed=rng) for _ in range(steps_per_epoch))

    trainer = Trainer(
        model,
        optim.Adam(model.parameters(), lr=5e-3),
        epochs=epochs,
        clip_grad_norm=1.0,
        progress=False,
        log=None,
        seed=0,
        stop_on_nonfinite=False,  # the residual cell may blow up: skip such steps, keep going
    )
    history = trainer.fit(fresh_batches, valid)
    curves[name] = [row["val_loss"] for row in history]
    mse = trainer.evaluate(test)["loss"]
    n = step_gradient_norms(model, (test[0][0][:, :256], test[0][1][:256]))["rnn"][0]
    ratio = n[0] / n[-1] if n[-1] > 0 else float("nan")
    table.append((name, mse, ratio))

print(f"always answering 1.0: MSE {baseline:.4f}\n")
print(f"{'cell':16s} {'test MSE':>9s} {'|dL/ds_0| / |dL/ds_T|':>22s}")
for name, mse, ratio in table:
    print(f"{name:16s} {mse:9.4f} {ratio:22.2e}")

# %%
fig, ax = plt.subplots(figsize=(8, 4))
steps = np.arange(1, epochs + 1) * steps_per_epoch
for name, curve in curves.items():
    ax.plot(steps, curve, marker="o", ms=3, label=name)
ax.axhline(baseline, color="gray", ls="--", label="always 1.0")
ax.set_yscale("log")
ax.set_xlabel("training step")
ax.set_ylabel("validation MSE")
ax.set_title(f"The adding problem, T = {T}")
ax.legend(fontsize=8)
show(fig, "02_gates_race")

# %% [markdown]
# **What you see** (without quick mode: 3000 steps each at T = 100, a few minutes; the same
# networks, data and seeds as `rnncore demo gates`, whose numbers the README's table holds): the
# tanh RNN stays at the baseline; the residual cell's error is *worse* than guessing, because
# its state and its predictions drift; the input gate alone does not stop the drift; with the
# forget gate the task becomes learnable, and the output gate (the full LSTM) learns it as well.
# The gradient column says the same as the plot above: a gradient that reaches the first step is
# necessary but not sufficient, the cell must also be able to *forget*. On the adding problem
# learning starts suddenly, at a step that varies with the seed: with other batches (try
# `default_rng(1)`) the forget-gate cell may still be at the baseline after 3000 steps while the
# LSTM has learned. Quick mode trains for 150 steps on short sequences: a first look only.
#
# **Try:** the forget-gate cell with `forget_bias=None`; a GRU (`cell="gru"`), whose update
# gate $z$ plays the roles of both $i$ and $f$ ($h_t = (1 - z_t) \odot n_t + z_t \odot
# h_{t-1}$); `rnncore demo gates` for the full table.
