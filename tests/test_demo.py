"""The main job `rnncore demo`, in a small configuration: the table, results.json and the PNG."""

import json
import sys

import pytest
import rnncore
from rnncore.cli import main as cli_main
from rnncore.demo import run_demo, verdict


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines = []
    summary = run_demo(
        out,
        cells=("rnn", "gru"),
        steps=20,
        scale=0.2,
        eval_every=50,
        valid_size=200,
        test_size=500,
        log=lines.append,
    )
    return out, summary, "\n".join(lines)


def test_table_compares_each_network_with_the_baseline(small_demo):
    out, summary, text = small_demo
    assert "test MSE" in text and "baseline" in text
    rows = [line for line in text.splitlines() if line.startswith(("RNN (tanh)", "GRU"))]
    assert len(rows) == 2  # one table row per network
    assert "learned" in rows[1] and f"{summary['baseline_mse']:.4f}" in rows[0]
    base = summary["baseline_mse"]
    assert 0.12 < base < 0.22
    gru = summary["results"]["gru"]
    assert gru["test_mse"] < 0.2 * base  # the GRU learns even in this short run
    assert verdict(gru["test_mse"], base) == "learned"
    assert len(gru["step_grad_norms_final"]) == 20 and gru["iterations"] == 300
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"]["rnn"]["test_mse"] == pytest.approx(
        summary["results"]["rnn"]["test_mse"]
    )


def test_png_is_written(small_demo):
    pytest.importorskip("matplotlib")
    out, summary, text = small_demo
    png = out / "demo.png"
    assert summary["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in text.splitlines()[-1]  # the path is printed at the end


def test_missing_matplotlib_skips_the_plot(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    lines = []
    summary = run_demo(
        tmp_path,
        cells=("gru",),
        steps=8,
        scale=0.05,
        eval_every=50,
        valid_size=100,
        test_size=100,
        log=lines.append,
    )
    assert summary["plot"] is None and not (tmp_path / "demo.png").exists()
    assert any("matplotlib is not installed" in line for line in lines)
    assert (tmp_path / "results.json").is_file()


def test_command_line_and_thread_setting(tmp_path, capsys):
    before = rnncore.get_num_threads()
    rc = cli_main(
        ["demo", "--quick", "--cells", "rnn", "--steps", "6", "--out", str(tmp_path), "--no-plot"]
    )
    assert rc == 0
    assert "RNN (tanh)" in capsys.readouterr().out
    assert rnncore.get_num_threads() == before  # the demo's one thread is given back
    with pytest.raises(ValueError, match="cells must be among"):
        run_demo(tmp_path, cells=("transformer",))


def test_demo_gates_runs_the_lecture_cells_from_the_command_line(tmp_path, capsys):
    rc = cli_main(
        [
            "demo",
            "gates",
            "--quick",
            "--cells",
            "residual,forget",
            "--steps",
            "8",
            "--out",
            str(tmp_path),
            "--no-plot",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "residual s+r" in text and "+ forget gate" in text and "forget gate is the step" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "gates" and set(saved["results"]) == {"residual", "forget"}
    assert saved["results"]["forget"]["cell"] == "gated-forget"
    with pytest.raises(ValueError, match="cells must be among"):
        run_demo(tmp_path, experiment="gates", cells=("gru",))
    with pytest.raises(ValueError, match="experiment must be one of"):
        run_demo(tmp_path, experiment="heads")
