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
# # Lesson 7 — Forecasting a time series
#
# The classic airline-passengers series (Box & Jenkins: monthly totals 1949-1960, 144 values)
# has a trend, a yearly season, and a season that grows with the trend. We forecast each next
# month from the twelve before it with an LSTM, and ask the question every forecaster must
# answer first: does it beat the trivial forecasts?
#
# - **persistence**: next month = this month;
# - **seasonal naive**: next month = the same month last year.
#
# Data: `shared/data/timeseries/airline-passengers.csv` when present, else a synthetic series
# with the same shape.

# %%
import numpy as np
from _course import data_dir, pick, plt, show
from rnncore import data, metrics, optim
from rnncore.models import Forecaster
from rnncore.train import Trainer

TS = data_dir("timeseries")
if TS is not None and (TS / "airline-passengers.csv").is_file():
    months, values = data.load_airline_passengers(TS)
    source = f"airline passengers from {TS}"
else:
    t = np.arange(144)
    rng = np.random.default_rng(0)
    values = (110 + 2.5 * t) * (1 + 0.15 * np.sin(2 * np.pi * t / 12)) + rng.normal(0, 5, 144)
    months = [f"{1949 + i // 12}-{i % 12 + 1:02d}" for i in t]
    source = "a synthetic seasonal series (no shared/data/timeseries)"
print(f"{source}: {values.size} values, {months[0]} .. {months[-1]}")

# %% [markdown]
# ## Windows, and a transform fitted on the past only
#
# `make_forecast_data` splits the series in time (the last third is the test period), fits a
# transform on the training part only (no peeking), and cuts windows: 12 inputs, the next value
# as the target. Two transforms to compare:
#
# - **scaled**: standardised values. The test period lies above anything seen in training, so
#   the network must extrapolate a level it has never seen.
# - **log + difference**: $z_t = \log y_t - \log y_{t-1}$, the monthly growth rate, then
#   standardised. The trend and the growing season become a stationary pattern; forecasts are
#   mapped back by undoing the difference from the last known value.

# %%
L = 12
setups = {
    "scaled": dict(),
    "log + difference": dict(log=True, difference=1),
}
fds = {
    name: data.make_forecast_data(values, L, 1, test_fraction=0.33, **kw)
    for name, kw in setups.items()
}
fd = fds["log + difference"]
n_test = fd.test_start.size
print(f"{fd.x_train.shape[0]} training windows, {n_test} test months from {months[fd.n_train]}")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.5))
ax1.plot(values)
ax1.axvline(fd.n_train, color="gray", ls="--")
ax1.set_title("the series (dashed: start of the test period)")
ax2.plot(fd.transform.transform(values))
ax2.axvline(fd.n_train - 1, color="gray", ls="--")
ax2.set_title("after log + difference + scaling")
show(fig, "07_series")

# %% [markdown]
# ## Training
#
# `Forecaster` is an LSTM over the window, its final hidden state → a linear layer → the next
# value. Batches are `(x [L, B, 1], y [B, 1])`, time-major like the engine.


# %%
def windows(x, y, batch_size, shuffle, seed=0):
    """A function returning one epoch of (x [L, B, 1], y [B, 1]) batches."""
    rng = np.random.default_rng(seed)
    xt = np.ascontiguousarray(x.T[:, :, None], dtype=np.float32)  # [L, N, 1]
    yt = y.astype(np.float32)

    def epoch():
        order = rng.permutation(len(y)) if shuffle else np.arange(len(y))
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            yield np.ascontiguousarray(xt[:, idx]), yt[idx]

    return epoch


forecasts, histories = {}, {}
for name, fd_ in fds.items():
    model = Forecaster(input_size=1, hidden_size=32, horizon=1, cell="lstm", seed=0)
    trainer = Trainer(
        model,
        optim.Adam(model.parameters(), lr=1e-2),
        epochs=pick(40, 150),
        clip_grad_norm=1.0,
        progress=False,
        log=None,
        seed=0,
    )
    histories[name] = trainer.fit(windows(fd_.x_train, fd_.y_train, 16, shuffle=True))
    z = model.predict(np.ascontiguousarray(fd_.x_test.T[:, :, None], dtype=np.float32))  # [M, 1]
    forecasts[name] = fd_.to_original(z, fd_.test_start)[:, 0]  # back to passengers

truth = values[fd.test_start]
forecasts["persistence"] = metrics.persistence_forecast(values, n_test)
forecasts["seasonal naive"] = metrics.seasonal_naive_forecast(values, n_test, season=12)
print(f"{'forecast':18s} {'RMSE':>7s} {'MAE':>7s}")
for name, f in forecasts.items():
    print(f"{name:18s} {metrics.rmse(f, truth):7.1f} {metrics.mae(f, truth):7.1f}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4), gridspec_kw={"width_ratios": [2, 1]})
ax1.plot(np.arange(values.size), values, color="black", lw=1, label="actual")
for name, f in forecasts.items():
    style = "-" if name in setups else ":"
    ax1.plot(fd.test_start, f, style, label=f"{name} (RMSE {metrics.rmse(f, truth):.1f})")
ax1.set_xlim(fd.n_train - 24, values.size)
ax1.set_ylim(0.8 * truth.min(), 1.1 * truth.max())
ax1.set_title("one-month-ahead forecasts over the test period")
ax1.legend(fontsize=8)
for name, h in histories.items():
    ax2.plot([r["train_loss"] for r in h], label=name)
ax2.set_yscale("log")
ax2.set_xlabel("epoch")
ax2.set_title("training MSE (transformed space)")
ax2.legend()
show(fig, "07_forecasts")

# %% [markdown]
# **What you see.** Both trivial forecasts lag behind: persistence by a month, the seasonal
# naive forecast by a year of growth. On the scaled series the LSTM undershoots the peaks of the
# last years: its inputs there are larger than any it was trained on, and a tanh network
# saturates rather than extrapolates. After log + difference the same network predicts growth
# *rates*, which look alike in every year, and its forecasts follow the series at about half
# the baselines' error (`rnncore train forecast`'s defaults measured a test RMSE of 19.3 against
# 41.9 for the seasonal naive forecast, `bench/results/quality.md`). The two training curves
# live in different transformed spaces: compare the RMSEs, not those.
#
# **Try:** `horizon=12` (predict a whole year at once from each window, `y` of shape `[B, 12]`);
# `mode="many_to_many"` (a prediction at every step of the window; targets from
# `rnncore.models.forecaster.step_targets`); a seasonal difference (`difference=12`). The
# command line: `rnncore train forecast --data ../shared/data/timeseries/airline-passengers.csv
# --out runs/airline --log --difference 1 --plot`.
