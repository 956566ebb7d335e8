"""Tests of the time-series tools: CSV columns, splits, scalers, exact inverses, windows."""

import numpy as np
import pytest
from rnncore.data import (
    DataFormatError,
    Scaler,
    SeriesTransform,
    holdout_size,
    make_forecast_data,
    make_windows,
    read_csv_series,
    split_series,
)

CSV = (
    '"Month","Passengers","Note"\r\n"1949-01",112,a\r\n"1949-02",118,"b, quoted"\r\n"1949-03",132,c'
)


def write(path, text):
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_read_csv_series_by_name(tmp_path):
    p = write(tmp_path / "air.csv", CSV)
    dates, values = read_csv_series(p, "Passengers", date_column="Month")
    assert dates == ["1949-01", "1949-02", "1949-03"]
    assert values.dtype == np.float64 and values.tolist() == [112.0, 118.0, 132.0]
    none, v2 = read_csv_series(p, "Passengers")
    assert none is None and np.array_equal(v2, values)
    semi = write(tmp_path / "semi.csv", "t;y\n1; 2.5e1\n\n2;-3\n")
    assert read_csv_series(semi, "y", delimiter=";")[1].tolist() == [25.0, -3.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"Month","Passengers"\n"1949-01",112\n"1949-02",n/a\n',
         r"line 3: column 'Passengers': 'n/a' is not a finite number"),
        ('"Month","Passengers"\n"1949-01",\n', r"line 2: column 'Passengers': '' is not"),
        ('"Month","Passengers"\n"1949-01",inf\n', r"line 2: column 'Passengers': 'inf' is not"),
        ('"Month","Passengers"\n"1949-01",1,2\n', r"line 2: expected 2 columns, got 3"),
        ('"Month","Riders"\n"1949-01",1\n',
         r"line 1: no column 'Passengers' in the header \(columns: Month, Riders\)"),
        ('"Month","Passengers"\n', r"line 1: no data rows after the header"),
        (b'"Month","Passengers"\n"1949-\xe9",1\n', r"line 2: not valid UTF-8"),
        ("", r"file is empty"),
    ],
)  # fmt: skip
def test_read_csv_series_errors(tmp_path, text, message):
    p = write(tmp_path / "series.csv", text)
    with pytest.raises(DataFormatError, match=r"series\.csv(, |: )" + message):
        read_csv_series(p, "Passengers", date_column="Month")


def test_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.csv"):
        read_csv_series(tmp_path / "none.csv", "x")


def test_split_takes_the_last_part_as_test():
    x = np.arange(144.0)
    assert holdout_size(144, 0.33) == 48  # 47.52 rounds to 48
    assert holdout_size(10, 0.25) == 3  # halves round up
    train, test = split_series(x, 0.33)
    assert train.tolist() == list(range(96)) and test.tolist() == list(range(96, 144))
    with pytest.raises(ValueError, match="empty train or test"):
        holdout_size(3, 0.01)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        holdout_size(10, 1.0)


def test_scalers_fit_and_invert():
    x = np.array([2.0, 4.0, 6.0, 8.0])
    s = Scaler("standard").fit(x)
    z = s.transform(x)
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)
    np.testing.assert_allclose(s.inverse_transform(z), x, rtol=0, atol=1e-12)
    m = Scaler("minmax").fit(x)
    assert m.transform(x).tolist() == [0.0, 1 / 3, 2 / 3, 1.0]
    assert m.transform([10.0]).tolist() == [4 / 3]  # unseen values are not clipped
    assert Scaler("minmax").fit([5.0, 5.0]).scale == 1.0
    assert Scaler.from_dict(m.to_dict()).transform(x).tolist() == m.transform(x).tolist()
    with pytest.raises(RuntimeError, match="fit"):
        Scaler().transform(x)
    with pytest.raises(ValueError, match="method"):
        Scaler("robust")


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("difference", [0, 1, 3])
@pytest.mark.parametrize("scaler", ["standard", "minmax", "none"])
def test_series_transform_has_an_exact_inverse(log, difference, scaler):
    x = 100 + 10 * np.sin(np.arange(40) / 3) + np.arange(40)
    t = SeriesTransform(log=log, difference=difference, scaler=scaler).fit(x[:30])
    z = t.transform(x)
    assert z.shape == (40 - difference,)
    back = t.inverse_transform(z, x[:difference] if difference else None)
    np.testing.assert_allclose(back, x[difference:], rtol=1e-12)
    # from any point, given the values before it (batched over a leading axis)
    starts = np.array([5, 12, 20])
    zz = np.stack([z[s - difference : s - difference + 4] for s in starts])
    hist = np.stack([x[s - 3 : s] for s in starts])
    np.testing.assert_allclose(t.inverse_transform(zz, hist), [x[s : s + 4] for s in starts],
                               rtol=1e-12)  # fmt: skip
    t2 = SeriesTransform.from_dict(t.to_dict())
    np.testing.assert_array_equal(t2.transform(x), z)


def test_series_transform_fits_on_train_only_and_checks():
    x = np.arange(1.0, 11.0)
    t = SeriesTransform(scaler="minmax").fit(x[:5])
    assert t.transform(x)[-1] == pytest.approx((10 - 1) / 4)
    with pytest.raises(ValueError, match="values > 0"):
        SeriesTransform(log=True).fit(np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="history is needed"):
        SeriesTransform(difference=1).fit(x).inverse_transform(np.zeros(2))
    with pytest.raises(ValueError, match="difference"):
        SeriesTransform(difference=-1)


def test_make_windows():
    x, y = make_windows(np.arange(7.0), 3, 2)
    assert x.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert y.tolist() == [[3, 4], [4, 5], [5, 6]]
    with pytest.raises(ValueError, match="too few"):
        make_windows(np.arange(4.0), 3, 2)
    with pytest.raises(ValueError, match="horizon"):
        make_windows(np.arange(4.0), 1, 0)


def test_make_forecast_data_layout_and_round_trip():
    values = 50 + np.arange(30.0) ** 1.5
    d = make_forecast_data(values, input_len=4, horizon=2, test_fraction=0.3, log=True,
                           difference=1)  # fmt: skip
    assert d.n_train == 21
    # train targets inside [0, 21), test targets inside [21, 30); inputs start after the lag
    assert d.train_start.tolist() == list(range(5, 20))
    assert d.test_start.tolist() == list(range(21, 29))
    assert d.x_train.shape == (15, 4) and d.y_train.shape == (15, 2)
    assert d.x_test.shape == (8, 4) and d.y_test.shape == (8, 2)
    # the scaler saw only training values: transformed training targets are centred
    z_train = d.transform.transform(values[:21])
    assert z_train.mean() == pytest.approx(0.0, abs=1e-12)
    truth = np.stack([values[s : s + 2] for s in d.test_start])
    np.testing.assert_allclose(d.to_original(d.y_test, d.test_start), truth, rtol=1e-12)
    np.testing.assert_allclose(d.to_original(d.y_test[:, 0], d.test_start), truth[:, 0],
                               rtol=1e-12)  # fmt: skip
    # an input window ends right before its targets
    np.testing.assert_allclose(d.to_original(d.x_test[:, -1], d.test_start - 1),
                               values[d.test_start - 1], rtol=1e-12)  # fmt: skip


def test_make_forecast_data_needs_windows():
    with pytest.raises(ValueError, match="no training windows"):
        make_forecast_data(np.arange(1.0, 11.0), input_len=8, test_fraction=0.3)
