"""Time series: CSV columns by name, time split, scaling/log/differencing with inverses, windows."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._io import DataFormatError, PathLike, read_text
from .sources import ensure_files


def read_csv_series(
    path: PathLike,
    value_column: str,
    *,
    date_column: str | None = None,
    delimiter: str = ",",
) -> tuple[list[str] | None, np.ndarray]:
    """One numeric column of a CSV file with a header row (quoted fields allowed).

    Args:
        path: the CSV file (UTF-8, .gz aware).
        value_column: header name of the values (surrounding spaces and quotes ignored).
        date_column: header name of the time stamps, kept as strings; None: not read.
        delimiter: field separator.
    Returns:
        (dates: list of str [N] or None, values: float64 [N]) in file order.
    Raises:
        DataFormatError (a ValueError) naming the file, line and column for a non-numeric or
        non-finite value or a row with the wrong number of fields; a missing column name
        lists the header's columns.
    """
    text = read_text(path, "read_csv_series")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    header_line = 0
    dates: list[str] = []
    values: list[float] = []
    for row in reader:
        n = reader.line_num
        if not row or all(not f.strip() for f in row):
            continue
        if header is None:
            header = [h.strip() for h in row]
            header_line = n
            cols = {name: i for i, name in enumerate(header)}
            wanted = [value_column] + ([date_column] if date_column is not None else [])
            for name in wanted:
                if name not in cols:
                    raise DataFormatError(
                        path, n, f"no column {name!r} in the header (columns: {', '.join(header)})"
                    )
            vi = cols[value_column]
            di = cols[date_column] if date_column is not None else None
            continue
        if len(row) != len(header):
            raise DataFormatError(path, n, f"expected {len(header)} columns, got {len(row)}")
        raw = row[vi].strip()
        try:
            v = float(raw)
        except ValueError:
            v = math.nan
            ok = False
        else:
            ok = math.isfinite(v)
        if not ok:
            raise DataFormatError(
                path, n, f"column {value_column!r}: {raw!r} is not a finite number"
            )
        values.append(v)
        if di is not None:
            dates.append(row[di].strip())
    if not values:
        raise DataFormatError(path, header_line or None, "no data rows after the header")
    return (dates if date_column is not None else None), np.asarray(values, dtype=np.float64)


def default_value_column(
    path: PathLike,
    *,
    date_column: str | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    delimiter: str = ",",
) -> str:
    """The column to forecast when none is named: the only column besides ``date_column`` and
    ``exclude`` whose first data row holds a number (a date column such as "1949-01" does not).

    Args:
        path: the CSV file with a header row.
        date_column: the time stamp column, never the value column.
        exclude: other columns that are not it (e.g. covariates).
        delimiter: field separator.
    Returns:
        The column's header name.
    Raises:
        DataFormatError: no data row, no numeric column, or several (all named, so that one can
            be passed as the value column).
    """
    text = read_text(path, "default_value_column")
    rows = (r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    rows = (r for r in rows if r and any(f.strip() for f in r))
    header = [h.strip() for h in next(rows, [])]
    first = next(rows, None)
    if not header or first is None:
        raise DataFormatError(path, None, "no data rows after the header")
    skip = {date_column, *exclude}
    numeric = []
    for name, field in zip(header, first, strict=False):
        if name in skip:
            continue
        try:
            ok = math.isfinite(float(field.strip()))
        except ValueError:
            ok = False
        if ok:
            numeric.append(name)
    if len(numeric) == 1:
        return numeric[0]
    found = f"several numeric columns ({', '.join(numeric)})" if numeric else "no numeric column"
    raise DataFormatError(
        path,
        None,
        f"{found} besides the date (columns: {', '.join(header)}); name the one to forecast",
    )


def load_airline_passengers(
    root: PathLike, *, download: bool = False
) -> tuple[list[str], np.ndarray]:
    """Monthly international airline passengers 1949-1960 (Box & Jenkins), 144 values.

    Args:
        root: folder holding ``airline-passengers.csv`` (columns "Month", "Passengers").
        download: fetch the file first if missing (SHA-256 checked).
    Returns:
        (months "YYYY-MM" [144], passengers in thousands float64 [144]).
    """
    root = Path(root)
    if download:
        ensure_files("airline", root)
    dates, values = read_csv_series(
        root / "airline-passengers.csv", "Passengers", date_column="Month"
    )
    assert dates is not None
    return dates, values


def holdout_size(n: int, test_fraction: float) -> int:
    """Number of test points: round(n * test_fraction) (halves up), at least 1, at most n - 1."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    k = int(math.floor(n * test_fraction + 0.5))
    if not 1 <= k <= n - 1:
        raise ValueError(
            f"test_fraction {test_fraction} of {n} points leaves an empty train or test part"
        )
    return k


def split_series(values: np.ndarray, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split a series in time: the last :func:`holdout_size` points are the test part.

    Args:
        values: 1-D array [N].
        test_fraction: in (0, 1).
    Returns:
        (train [N - k], test [k]) views.
    """
    values = _series(values, "split_series")
    k = holdout_size(values.size, test_fraction)
    return values[: values.size - k], values[values.size - k :]


def _series(values: Any, who: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{who}: values must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{who}: values must be finite")
    return arr


class Scaler:
    """Affine scaling fitted on training data: z = (x - offset) / scale.

    Args:
        method: "standard" (offset mean, scale standard deviation, ddof 0), "minmax" (to
            [0, 1] on the fitted data: offset min, scale max - min) or "none". A zero spread
            gives scale 1.
    """

    METHODS = ("standard", "minmax", "none")

    def __init__(self, method: str = "standard"):
        if method not in self.METHODS:
            raise ValueError(f"Scaler: method must be one of {self.METHODS}, got {method!r}")
        self.method = method
        self.offset: float | None = None
        self.scale: float | None = None

    def fit(self, x: np.ndarray) -> Scaler:
        """Fit on 1-D finite training values; returns self."""
        x = _series(x, "Scaler.fit")
        if self.method == "standard":
            offset, spread = float(x.mean()), float(x.std())
        elif self.method == "minmax":
            offset, spread = float(x.min()), float(x.max() - x.min())
        else:
            offset, spread = 0.0, 1.0
        self.offset, self.scale = offset, (spread if spread > 0 else 1.0)
        return self

    def _fitted(self) -> tuple[float, float]:
        if self.offset is None or self.scale is None:
            raise RuntimeError("Scaler: call fit() first")
        return self.offset, self.scale

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(x - offset) / scale, any shape, float64."""
        o, s = self._fitted()
        return (np.asarray(x, dtype=np.float64) - o) / s

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """z * scale + offset, any shape, float64."""
        o, s = self._fitted()
        return np.asarray(z, dtype=np.float64) * s + o

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {"method": self.method, "offset": self.offset, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scaler:
        """Inverse of :meth:`to_dict`."""
        s = cls(d["method"])
        s.offset, s.scale = d["offset"], d["scale"]
        return s


class SeriesTransform:
    """log -> lag differencing -> scaling, each optional, fitted on the training part only.

    ``transform`` maps a series x [N] to z [N - difference] where z[j] belongs to time
    j + difference. ``inverse_transform`` undoes it exactly (up to float rounding) given the
    ``difference`` original values just before z's first time step.

    Args:
        log: take the natural log first (values must be > 0).
        difference: lag of the differencing y[t] - y[t - lag] (0: none, 1: first differences,
            12: seasonal for monthly data).
        scaler: method of the :class:`Scaler` fitted on the (log, differenced) training values.
    """

    def __init__(self, *, log: bool = False, difference: int = 0, scaler: str = "standard"):
        if isinstance(difference, bool) or not isinstance(difference, int) or difference < 0:
            raise ValueError(
                f"SeriesTransform: difference must be an integer >= 0, got {difference!r}"
            )
        self.log = bool(log)
        self.difference = difference
        self.scaler = Scaler(scaler)

    def _pre(self, x: np.ndarray, who: str) -> np.ndarray:
        if self.log:
            if np.any(x <= 0):
                raise ValueError(f"{who}: log=True needs values > 0")
            x = np.log(x)
        if self.difference:
            if x.shape[-1] <= self.difference:
                raise ValueError(
                    f"{who}: need more than difference={self.difference} values, got {x.shape[-1]}"
                )
            x = x[..., self.difference :] - x[..., : -self.difference]
        return x

    def fit(self, train_values: np.ndarray) -> SeriesTransform:
        """Fit the scaler on the transformed training values [N_train]; returns self."""
        x = _series(train_values, "SeriesTransform.fit")
        self.scaler.fit(self._pre(x, "SeriesTransform.fit"))
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Transformed series: float64 [N - difference]; element j is time j + difference."""
        x = _series(values, "SeriesTransform.transform")
        return self.scaler.transform(self._pre(x, "SeriesTransform.transform"))

    def inverse_transform(self, z: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
        """Original-scale values of consecutive transformed steps.

        Args:
            z: transformed values [..., H] for H consecutive time steps t, t + 1, ...
            history: original values [..., >= difference] ending at time t - 1 (only the last
                ``difference`` are used; ignored, may be None, when difference is 0).
        Returns:
            float64 [..., H] on the original scale.
        """
        y = self.scaler.inverse_transform(z)
        lag = self.difference
        if lag:
            if history is None:
                raise ValueError(
                    "SeriesTransform.inverse_transform: history is needed to undo "
                    f"differencing (the {lag} values before z)"
                )
            hist = np.asarray(history, dtype=np.float64)
            if hist.shape[-1] < lag:
                raise ValueError(
                    f"SeriesTransform.inverse_transform: history needs >= {lag} values in its "
                    f"last axis, got {hist.shape[-1]}"
                )
            hist = hist[..., -lag:]
            if self.log:
                hist = np.log(hist)
            lead = np.broadcast_shapes(hist.shape[:-1], y.shape[:-1])
            out = np.empty(lead + (lag + y.shape[-1],))
            out[..., :lag] = hist
            for k in range(y.shape[-1]):
                out[..., lag + k] = out[..., k] + y[..., k]
            y = out[..., lag:]
        return np.exp(y) if self.log else y

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (for a checkpoint's metadata)."""
        return {"log": self.log, "difference": self.difference, "scaler": self.scaler.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SeriesTransform:
        """Inverse of :meth:`to_dict`."""
        t = cls(log=d["log"], difference=d["difference"], scaler=d["scaler"]["method"])
        t.scaler = Scaler.from_dict(d["scaler"])
        return t


def make_windows(
    series: np.ndarray, input_len: int, horizon: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """All (input, target) windows of a series: x = s[i : i + L], y = s[i + L : i + L + H].

    Args:
        series: 1-D array [N].
        input_len: L >= 1.
        horizon: H >= 1 steps to predict.
    Returns:
        (x float64 [N - L - H + 1, L], y float64 [N - L - H + 1, H]); for the recurrent
        layers use ``x.T[:, :, None]`` ([L, batch, 1]).
    """
    s = _series(series, "make_windows")
    _check_window(input_len, horizon, "make_windows")
    n = s.size - input_len - horizon + 1
    if n < 1:
        raise ValueError(
            f"make_windows: {s.size} values are too few for input_len {input_len} + horizon "
            f"{horizon}"
        )
    w = np.lib.stride_tricks.sliding_window_view(s, input_len + horizon)[:n]
    return w[:, :input_len].copy(), w[:, input_len:].copy()


def _check_window(input_len: int, horizon: int, who: str) -> None:
    for name, v in (("input_len", input_len), ("horizon", horizon)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{who}: {name} must be an integer >= 1, got {v!r}")


@dataclass
class ForecastData:
    """Windows of a series for forecasting, in the transformed space, and the way back.

    Attributes:
        x_train, x_test: float64 [N_*, input_len] transformed inputs.
        y_train, y_test: float64 [N_*, horizon] transformed targets.
        train_start, test_start: int64 [N_*], time index (into ``values``) of each window's
            first target.
        values: the original series, float64 [N].
        n_train: length of the training part (times < n_train); test targets are all later.
        transform: the :class:`SeriesTransform`, fitted on ``values[:n_train]`` only.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_start: np.ndarray
    test_start: np.ndarray
    values: np.ndarray
    n_train: int
    transform: SeriesTransform

    def to_original(self, z: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Transformed predictions back to the original scale.

        Args:
            z: [M, horizon] (or [M]) predictions for windows whose first target is at ``start``.
            start: int [M] time indices (``test_start`` or ``train_start``); differencing is
                undone from the actual values before each window.
        Returns:
            float64 array of z's shape.
        """
        z = np.asarray(z, dtype=np.float64)
        squeeze = z.ndim == 1
        z2 = z[:, None] if squeeze else z
        start = np.asarray(start, dtype=np.int64)
        lag = self.transform.difference
        hist = None
        if lag:
            hist = self.values[start[:, None] + np.arange(-lag, 0)[None, :]]
        out = self.transform.inverse_transform(z2, hist)
        return out[:, 0] if squeeze else out


def make_forecast_data(
    values: np.ndarray,
    input_len: int,
    horizon: int = 1,
    *,
    test_fraction: float = 0.33,
    scaler: str = "standard",
    log: bool = False,
    difference: int = 0,
) -> ForecastData:
    """Split a series in time, fit the transform on the training part only, and cut windows.

    The last :func:`holdout_size` points are the test part. Training windows have all their
    targets in the training part; test windows have all targets in the test part and take
    their inputs from the values just before (which may lie in the training part, as in
    one-step walk-forward evaluation). Inputs and targets are in the transformed space.

    Args:
        values: 1-D series [N].
        input_len: window input length L.
        horizon: steps predicted per window H.
        test_fraction: in (0, 1).
        scaler, log, difference: as in :class:`SeriesTransform`.
    Returns:
        ForecastData.
    """
    x = _series(values, "make_forecast_data")
    _check_window(input_len, horizon, "make_forecast_data")
    n = x.size
    n_train = n - holdout_size(n, test_fraction)
    tr = SeriesTransform(log=log, difference=difference, scaler=scaler).fit(x[:n_train])
    z = tr.transform(x)  # z[j] is time j + lag
    lag = difference
    first = lag + input_len
    starts_train = np.arange(first, n_train - horizon + 1, dtype=np.int64)
    starts_test = np.arange(max(first, n_train), n - horizon + 1, dtype=np.int64)
    for name, s in (("training", starts_train), ("test", starts_test)):
        if s.size == 0:
            raise ValueError(
                f"make_forecast_data: no {name} windows (N={n}, n_train={n_train}, "
                f"input_len={input_len}, horizon={horizon}, difference={difference})"
            )

    def cut(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        j = starts - lag
        xi = z[j[:, None] + np.arange(-input_len, 0)[None, :]]
        yi = z[j[:, None] + np.arange(horizon)[None, :]]
        return xi, yi

    x_train, y_train = cut(starts_train)
    x_test, y_test = cut(starts_test)
    return ForecastData(x_train, y_train, x_test, y_test, starts_train, starts_test, x, n_train, tr)
