"""`rnncore train forecast`: forecast a time series from a CSV column, against naive baselines.

The series (``--value-column``, optionally with covariate columns ``--extra-columns``) is split
in time: the last ``--test-fraction`` is the test part. Transforms (log, differencing, scaling)
are fitted on the training part only. Windows of ``--input-len`` steps predict the next
``--horizon`` values. Reported on the original scale over every test window and horizon step:
RMSE and MAE of the model, of the persistence forecast (the last known value) and of the
seasonal-naive forecast (the value one ``--season`` earlier), as defined in
:mod:`rnncore.metrics`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..data import DataFormatError, Scaler, make_forecast_data, read_csv_series
from ..data.timeseries import default_value_column
from ..metrics import mae, rmse
from ..models import Forecaster
from ..models.forecaster import MODES, step_targets
from ._common import (
    TaskError,
    add_common_arguments,
    check_common,
    make_optimizer,
    say,
    train_and_report,
    write_json,
)
from .adding import ArrayBatches

NAME = "forecast"
HELP = "time-series forecasting from a CSV column (RMSE/MAE vs persistence and seasonal naive)"
DEFAULTS: dict[str, Any] = dict(
    cell="lstm",
    layers=1,
    hidden=32,
    dropout=0.0,
    epochs=100,
    batch_size=16,
    optimizer="adam",
    lr=5e-3,
    clip=1.0,
)
#: what the defaults were measured on (the end of `rnncore train forecast --help`)
MEASURED = (
    "Defaults measured on the airline-passengers series (144 monthly values, the last 33% as "
    "test) with --log --difference 1: test RMSE 19.3 against 41.9 for the seasonal-naive "
    "forecast, the 100 default epochs in about 2 s (bench/quality_tasks2.py, "
    "bench/results/quality.md). Not measured on longer series, nor on a trending one without "
    "--log/--difference."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = MEASURED
    p.description = (
        "Train a recurrent forecaster on one numeric column of a CSV file (with a header row) "
        "and compare it with the persistence and seasonal-naive forecasts on the last part of "
        "the series."
    )
    add_common_arguments(
        p, DEFAULTS, data_help="CSV file with a header row (.gz allowed)", embed=False
    )
    g = p.add_argument_group("series")
    g.add_argument(
        "--value-column",
        default=None,
        metavar="NAME",
        help="column to forecast (default: the only numeric column besides --date-column and "
        "--extra-columns)",
    )
    g.add_argument(
        "--date-column", default=None, metavar="NAME", help="time stamp column (kept for reports)"
    )
    g.add_argument(
        "--extra-columns",
        default="",
        metavar="A,B",
        help="comma-separated numeric covariate columns fed as extra inputs (scaled on train)",
    )
    g.add_argument(
        "--delimiter",
        type=_delimiter,
        default=",",
        metavar="C",
        help="CSV field separator: one character ('\\t' for a tab)",
    )
    g.add_argument("--horizon", type=int, default=1, metavar="H", help="steps predicted at once")
    g.add_argument("--input-len", type=int, default=12, metavar="L", help="window length")
    g.add_argument(
        "--test-fraction", type=float, default=0.33, metavar="F", help="last part of the series"
    )
    g.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="latest training windows held out for validation (0: none, best epoch by train loss)",
    )
    g.add_argument("--log", action="store_true", help="take the log first (values > 0)")
    g.add_argument(
        "--difference", type=int, default=0, metavar="LAG", help="difference at this lag (0: none)"
    )
    g.add_argument(
        "--scaler", choices=Scaler.METHODS, default="standard", help="scaling fitted on train"
    )
    g.add_argument(
        "--mode",
        choices=MODES,
        default="many_to_one",
        help="many_to_one: last state -> H values; many_to_many: H values at every step",
    )
    g.add_argument(
        "--season", type=int, default=12, metavar="S", help="season of the seasonal-naive baseline"
    )


def _delimiter(text: str) -> str:
    """argparse type of --delimiter: one character; the two characters \\t (as a shell passes
    '\\t') mean a tab."""
    if text == "\\t":
        return "\t"
    if len(text) != 1:
        raise argparse.ArgumentTypeError(
            f"expected one character (or '\\t' for a tab), got {text!r}"
        )
    return text


def _columns(spec: str) -> list[str]:
    return [c.strip() for c in spec.split(",") if c.strip()]


def baseline_forecasts(
    values: np.ndarray, starts: np.ndarray, horizon: int, season: int
) -> tuple[np.ndarray, np.ndarray]:
    """Persistence and seasonal-naive forecasts [M, H] of the windows whose first target is at
    ``starts`` (forecast origin starts - 1): step k+1 ahead is predicted by values[start - 1]
    and by values[start + k - season * ceil((k + 1) / season)] (rnncore.metrics' definitions).
    """
    k = np.arange(horizon)[None, :]
    s = starts[:, None]
    persistence = values[np.broadcast_to(s - 1, (len(starts), horizon))]
    lag = season * (-(-(k + 1) // season))
    if np.any(s + k - lag < 0):
        raise TaskError(
            f"--season {season} reaches before the start of the series for the first test window"
        )
    return persistence, values[s + k - lag]


def load_series(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None, list | None]:
    """(target values [N], covariates [N, C] or None, dates or None) from the CSV file."""
    dates, values = read_csv_series(
        args.data, args.value_column, date_column=args.date_column, delimiter=args.delimiter
    )
    extra = _columns(args.extra_columns)
    cov = None
    if extra:
        cols = [read_csv_series(args.data, c, delimiter=args.delimiter)[1] for c in extra]
        cov = np.stack(cols, axis=1)
    return values, cov, dates


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_common(args)
    for name in ("horizon", "input_len", "season"):
        if getattr(args, name) < 1:
            raise TaskError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.difference < 0:
        raise TaskError(f"--difference must be >= 0, got {args.difference}")
    if not 0 < args.test_fraction < 1:
        raise TaskError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if not 0 <= args.valid_fraction < 1:
        raise TaskError(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    if args.value_column is None:
        try:
            args.value_column = default_value_column(
                args.data,
                date_column=args.date_column,
                exclude=_columns(args.extra_columns),
                delimiter=args.delimiter,
            )
        except DataFormatError as e:
            raise TaskError(f"--value-column is needed: {e}") from None
    values, cov, _ = load_series(args)
    n = values.size
    if args.horizon >= n:
        raise TaskError(
            f"--horizon {args.horizon} is longer than the series: {args.data} has {n} values in "
            f"column {args.value_column!r}"
        )
    try:
        fd = make_forecast_data(
            values,
            args.input_len,
            args.horizon,
            test_fraction=args.test_fraction,
            scaler=args.scaler,
            log=args.log,
            difference=args.difference,
        )
    except ValueError as e:
        raise TaskError(
            f"{e}; the series ({n} values in {args.data}) is too short for --input-len "
            f"{args.input_len}, --horizon {args.horizon}, --difference {args.difference} and "
            f"--test-fraction {args.test_fraction}"
        ) from None
    L, H = args.input_len, args.horizon
    baseline_forecasts(fd.values, fd.test_start, H, args.season)  # --season checked before training

    # inputs [M, L, I]: the transformed target, then covariates scaled on the training part
    def inputs(x_target: np.ndarray, starts: np.ndarray) -> np.ndarray:
        parts = [x_target[:, :, None]]
        if cov is not None:
            times = starts[:, None] + np.arange(-L, 0)[None, :]
            parts.append(cov_scaled[times])
        return np.concatenate(parts, axis=2).astype(np.float32)

    cov_scalers = []
    if cov is not None:
        cov_scaled = np.empty_like(cov)
        for j in range(cov.shape[1]):
            sc = Scaler(args.scaler).fit(cov[: fd.n_train, j])
            cov_scaled[:, j] = sc.transform(cov[:, j])
            cov_scalers.append(sc.to_dict())
    x_all = inputs(fd.x_train, fd.train_start)
    x_test = inputs(fd.x_test, fd.test_start)
    n_valid = int(round(len(x_all) * args.valid_fraction))
    if n_valid >= len(x_all):
        raise TaskError(f"--valid-fraction {args.valid_fraction} leaves no training windows")

    def targets(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if args.mode == "many_to_many":
            return step_targets(x[:, :, 0].astype(np.float64), y).astype(np.float32)
        return y.astype(np.float32)

    def batches(x: np.ndarray, y: np.ndarray, shuffle: bool) -> ArrayBatches:
        xt = np.ascontiguousarray(x.transpose(1, 0, 2))  # [L, M, I]
        yt = targets(x, y)

        def collate(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            yy = yt[:, idx] if args.mode == "many_to_many" else yt[idx]
            return np.ascontiguousarray(xt[:, idx]), np.ascontiguousarray(yy)

        return ArrayBatches(len(x), args.batch_size, collate, shuffle=shuffle, seed=args.seed)

    n_fit = len(x_all) - n_valid
    train = batches(x_all[:n_fit], fd.y_train[:n_fit], True)
    valid = batches(x_all[n_fit:], fd.y_train[n_fit:], False) if n_valid else None
    test = batches(x_test, fd.y_test, False)
    model = Forecaster(
        input_size=x_all.shape[2],
        hidden_size=args.hidden,
        horizon=H,
        num_layers=args.layers,
        cell=args.cell,
        mode=args.mode,
        dropout=args.dropout,
        seed=args.seed,
    )
    extra = {
        "task": NAME,
        "value_column": args.value_column,
        "extra_columns": _columns(args.extra_columns),
        "input_len": L,
        "horizon": H,
        "transform": fd.transform.to_dict(),
        "covariate_scalers": cov_scalers,
        "season": args.season,
    }
    result = train_and_report(
        args,
        model,
        train,
        valid,
        test,
        optimizer=make_optimizer(args, model),
        extra=extra,
        data_info={
            "values": n,
            "n_train": fd.n_train,
            "train_windows": n_fit,
            "valid_windows": n_valid,
            "test_windows": len(x_test),
            "source": str(Path(args.data)),
        },
    )
    pred_z = model.predict(np.ascontiguousarray(x_test.transpose(1, 0, 2)))
    pred = fd.to_original(pred_z, fd.test_start)
    truth = fd.values[fd.test_start[:, None] + np.arange(H)[None, :]]
    persistence, seasonal = baseline_forecasts(fd.values, fd.test_start, H, args.season)
    scores = {
        "rmse": rmse(pred, truth),
        "mae": mae(pred, truth),
        "persistence_rmse": rmse(persistence, truth),
        "persistence_mae": mae(persistence, truth),
        "seasonal_naive_rmse": rmse(seasonal, truth),
        "seasonal_naive_mae": mae(seasonal, truth),
        "rmse_per_step": [rmse(pred[:, k], truth[:, k]) for k in range(H)],
    }
    say(
        args,
        f"test RMSE {scores['rmse']:.3f} (MAE {scores['mae']:.3f}); persistence "
        f"{scores['persistence_rmse']:.3f}, seasonal naive (season {args.season}) "
        f"{scores['seasonal_naive_rmse']:.3f}; {len(truth)} windows x {H} steps",
    )
    result["forecast"] = scores
    result["test_predictions"] = pred.tolist()
    write_json(Path(args.out) / "metrics.json", result)
    return result
