"""The data files plugins read from the config directory: templates, lexicons, prompts.

One reader, so every plugin reports a missing or broken file the same way,
naming the file, and fails at start-up rather than on a turn.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any, Mapping

from spiralogic.settings import CONFIG_DIR


class DataFileError(ValueError):
    """A data file is missing, unreadable or not valid TOML."""


def data_file(
    config: Mapping[str, Any],
    key: str,
    default: str,
    plugin: str,
    error: type[Exception] = DataFileError,
    directory: str | Path = CONFIG_DIR,
) -> Path:
    """The file a plugin setting names, relative to the config directory."""
    name = config.get(key, default)
    if not isinstance(name, str) or not name:
        raise error(f"plugins.{plugin}.{key} must be a file name, not {name!r}")
    return _joined(directory, name)


@functools.lru_cache(maxsize=64)
def _joined(directory: str | Path, name: str) -> Path:
    # Plugins resolve their files on every turn; building a Path costs more than the rest of their config reads.
    return Path(directory) / name


def read_toml(path: Path, what: str, error: type[Exception] = DataFileError) -> dict[str, Any]:
    """The parsed file; ``error`` (naming ``what`` and the path) if it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
