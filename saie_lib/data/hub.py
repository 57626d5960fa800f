"""Hugging Face Hub fallback, used when no data folder is given; `datasets` is imported only here, lazily."""

from __future__ import annotations

import os
from collections.abc import Iterator

from saie_lib.data.io import DATA_LAYOUT_HELP, DataUnavailableError, Location

OFFLINE_ENV_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def offline_setting() -> str | None:
    """The offline variable that is set (e.g. "HF_HUB_OFFLINE=1"), or None."""
    for name in OFFLINE_ENV_VARS:
        value = os.environ.get(name, "")
        if value.strip().upper() in _TRUE_VALUES:
            return f"{name}={value}"
    return None


def hub_records(hub_id: str, config: str | None, split: str) -> Iterator[tuple[Location, dict]]:
    """Each row of a Hub dataset split as a dict with its location; no Hub access raises DataUnavailableError."""
    offline = offline_setting()
    if offline:
        raise DataUnavailableError(
            f"no data folder was given and Hub access is off ({offline}), so {hub_id} cannot be loaded. "
            f"{DATA_LAYOUT_HELP}"
        )
    from datasets import load_dataset

    try:
        rows = load_dataset(hub_id, config, split=split)
    except (ConnectionError, TimeoutError) as exc:
        raise DataUnavailableError(
            f"no data folder was given and the Hugging Face Hub is unreachable ({exc}). {DATA_LAYOUT_HELP}"
        ) from exc
    source = f"Hugging Face Hub {hub_id} ({split})"
    for index, row in enumerate(rows):
        yield Location(source, index + 1, unit="row"), row
