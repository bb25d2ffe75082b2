"""All three CLIs: bad input ends in exactly one ``PROG: error: ...`` line on stderr naming the problem, exit 2,
no traceback (hpatches_kit/cli/_errors.py)."""

import pytest

from hpatches_kit.cli import _errors
from hpatches_kit.cli import data as data_cli
from hpatches_kit.cli import eval as eval_cli
from hpatches_kit.cli import train as train_cli
from hpatches_kit.data.errors import DataError


def _one_error_line(capsys, prog, *needles):
    text = capsys.readouterr().err
    assert "Traceback" not in text
    err = [ln for ln in text.splitlines() if "error:" in ln]  # hpatches-train also prints a status line first
    assert len(err) == 1, err
    assert err[0].startswith(f"{prog}: error: ")
    for n in needles:
        assert n in err[0], (n, err[0])
    return err[0]


def test_train_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-data"
    rc = train_cli.main(["descriptor", "--data", str(missing), "--out", str(tmp_path / "run"), "--epochs", "1"])
    assert rc == 2
    _one_error_line(capsys, "hpatches-train descriptor", str(missing))
    assert not (tmp_path / "run").exists()  # the empty --out this run created is removed


def test_eval_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-data"
    assert eval_cli.main(["--data", str(missing), "--descriptor", "raw"]) == 2
    _one_error_line(capsys, "hpatches-eval", str(missing))


def test_data_synth_bad_argument(tmp_path, capsys):
    assert data_cli.main(["synth", "--out", str(tmp_path / "d"), "--jitter-scale", "1", "2", "3"]) == 2
    _one_error_line(capsys, "hpatches-data synth", "--jitter-scale")


@pytest.mark.parametrize(
    "exc, needles",
    [
        (DataError("/d/x.png", "not a PNG\nsecond line"), ["/d/x.png: not a PNG"]),
        (ValueError("bad value"), ["bad value"]),
        (FileNotFoundError(2, "No such file or directory", "/d/y"), ["/d/y", "No such file"]),
        (SystemExit("hpatches-eval: --denoiser needs --model"), ["--denoiser needs --model"]),
    ],
)
def test_run_command_maps_errors(exc, needles, capsys):
    cleaned = []

    def fail(_):
        raise exc

    assert _errors.run_command("prog sub", fail, None, on_error=lambda: cleaned.append(1)) == 2
    line = _one_error_line(capsys, "prog sub", *needles)
    assert "second line" not in line and line.count("hpatches-eval") == 0
    assert cleaned == [1]


def test_run_command_passes_status_and_exit_codes():
    assert _errors.run_command("p", lambda: None) == 0
    assert _errors.run_command("p", lambda: 3) == 3
    with pytest.raises(SystemExit) as e:  # argparse's own exits (int codes) are not rewritten
        _errors.run_command("p", lambda: (_ for _ in ()).throw(SystemExit(1)))
    assert e.value.code == 1


def test_library_option_errors_are_shown_as_flags(capsys):
    # the library speaks option names (what a Python caller passed); the CLI shows its flags
    from hpatches_kit.errors import OptionError
    from hpatches_kit.training.run import check_schedule

    with pytest.raises(OptionError) as e:
        check_schedule(epochs=0, batch_size=16)
    assert str(e.value) == "epochs must be >= 1 and batch_size >= 2" and e.value.options == ("epochs", "batch_size")

    def fail(exc):
        raise exc

    assert _errors.run_command("hpatches-train descriptor", fail, e.value) == 2
    _one_error_line(capsys, "hpatches-train descriptor", "--epochs must be >= 1 and --batch-size >= 2")
    assert _errors.run_command("p", fail, OptionError("{evaluate} needs held-out sequences", "evaluate")) == 2
    _one_error_line(capsys, "p", "--no-eval needs held-out sequences")
    # a command's run (called without run_command, as tests and notebooks do) raises it in flag terms too
    with pytest.raises(ValueError, match="^--lr must be > 0, got 0.0$"):
        with _errors.options_as_flags():
            check_schedule(epochs=1, batch_size=16, lr=0.0)
