"""Quiet executed notebooks: what the ML libraries say (warnings, info lines, frozen "Loading weights" bars) goes
to a log file beside the executed notebook instead of into its cells, so a cell shows this project's own
output and one progress line per loop.

`make demo` / `make reproduce` start each notebook's kernel with `quiet_libraries()` (saie_lib.notebook_runner);
the log file is named by env SAIE_NOTEBOOK_LOG, else <cache dir>/logs/notebook.log. A notebook opened by hand
keeps the libraries' usual output unless it calls this itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .paths import cache_dir

LOG_ENV = "SAIE_NOTEBOOK_LOG"
LIBRARY_LOGGERS = ("transformers", "peft", "accelerate", "datasets", "huggingface_hub", "torch", "py.warnings",
                   "urllib3", "httpx", "openai", "filelock", "fsspec")
FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def log_file() -> Path:
    return Path(os.environ.get(LOG_ENV) or cache_dir() / "logs" / "notebook.log")


def quiet_libraries(path: str | os.PathLike | None = None) -> Path:
    """Send the libraries' loggers and Python warnings to `path` (default `log_file()`) and turn their progress
    bars off; returns the log file."""
    target = Path(path) if path else log_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    logging.captureWarnings(True)
    _quiet_transformers(handler)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    return target


def _quiet_transformers(handler: logging.Handler) -> None:
    """transformers installs its own stderr handler and progress bars ("Loading weights"): replace both."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_default_handler()
    transformers_logging.add_handler(handler)
    transformers_logging.disable_progress_bar()
