"""Quiet batch notebooks (saie_lib.kernel_io, notebook_log, notebook_runner): streams that keep their own lines,
progress bars that are one line in the executed copy, a failure told by its message first, library messages in
a log file, and no kernel warning about TCP."""

import io
import json
import logging
import warnings
from types import SimpleNamespace

import pytest

from saie_lib.kernel_io import LineKeeper, coalesce_streams, collapse_carriage_returns, failure_message


def test_two_streams_never_share_a_line():
    out, err = io.StringIO(), io.StringIO()
    keeper = LineKeeper()
    keeper.write(err, "\revaluate:  10%")
    keeper.write(out, "a printed line\n")
    keeper.write(err, "\revaluate: 100%")
    keeper.finish()
    assert err.getvalue() == "\revaluate:  10%\n\revaluate: 100%\n"
    assert out.getvalue() == "a printed line\n"


def test_a_progress_bar_updated_in_place_becomes_one_line(tmp_path):
    cell = {"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1, "outputs": [
        {"output_type": "stream", "name": "stderr", "text": "\rtrain:   0%| 0/4"},
        {"output_type": "stream", "name": "stderr", "text": ["\rtrain:  50%| 2/4", "\rtrain: 100%| 4/4"]},
        {"output_type": "stream", "name": "stderr", "text": "\n"},
        {"output_type": "stream", "name": "stdout", "text": "done\n"},
        {"output_type": "stream", "name": "stderr", "text": "\revaluate: 100%| 3/3\n"}]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    coalesce_streams(path)
    outputs = json.loads(path.read_text())["cells"][0]["outputs"]
    assert [("".join(o["text"]), o["name"]) for o in outputs] == [
        ("train: 100%| 4/4\n", "stderr"), ("done\n", "stdout"), ("evaluate: 100%| 3/3\n", "stderr")]
    assert collapse_carriage_returns("a\rb\nc") == "b\nc"


def test_a_failure_is_its_message_first_then_where_the_traceback_is(tmp_path):
    error = SimpleNamespace(ename="ValueError", evalue="\x1b[31mconfig field 'limit' = -1\x1b[0m", exec_count=7)
    message = failure_message(error, tmp_path / "10_math_gsm8k.ipynb", tmp_path / "10_math_gsm8k.log")
    lines = message.splitlines()
    assert lines[0] == "ValueError: config field 'limit' = -1"
    assert "cell 7" in lines[1] and "10_math_gsm8k.ipynb" in lines[1] and "10_math_gsm8k.log" in lines[2]


def test_quiet_libraries_sends_warnings_and_library_logs_to_the_file(tmp_path):
    from saie_lib.notebook_log import LIBRARY_LOGGERS, quiet_libraries

    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
             for name in LIBRARY_LOGGERS}
    try:
        path = quiet_libraries(tmp_path / "nb.log")
        logging.getLogger("peft").warning("a peft warning")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a python warning", UserWarning, stacklevel=1)
        for handler in logging.getLogger("peft").handlers:
            handler.flush()
        text = path.read_text()
        assert "a peft warning" in text and "a python warning" in text
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate


@pytest.mark.notebooks
@pytest.mark.slow
def test_a_batch_notebook_is_quiet_and_fails_with_its_message(tmp_path, capfd):
    from saie_lib.kernel_io import NotebookFailed
    from saie_lib.notebook_runner import execute

    output = tmp_path / "runs" / "90_figures_tables.ipynb"
    execute("90_figures_tables.ipynb", output, {"results_root": str(tmp_path)}, results_root=tmp_path)
    printed = capfd.readouterr()
    assert "without encryption" not in printed.err and "Executing" not in printed.err
    assert output.is_file() and output.with_suffix(".log").is_file()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotebookFailed) as failed:
        execute("90_figures_tables.ipynb", output, {"results_root": str(blocker / "x")}, results_root=tmp_path,
                progress=False)
    first_line = str(failed.value).splitlines()[0]
    assert first_line.startswith(("RunWriteError", "NotADirectoryError", "FileExistsError", "OSError"))
