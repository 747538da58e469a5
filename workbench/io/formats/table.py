"""CSV and TSV tables: numeric feature columns and a target column (numbers or names)."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from workbench.io.formats.base import Head, decode_text, few, sniff_delimiter
from workbench.io.formats.loaded import DataFormat, LoadedData
from workbench.io.formats.targets import categorical, read_targets
from workbench.io.safety import (
    DEFAULT_LIMITS,
    DataError,
    Limits,
    SizeLimitError,
    Source,
    as_source,
)

#: Column names taken as the target when none is chosen (case-insensitive, in this order).
TARGET_NAMES = ("target", "label", "labels", "class", "y")


@dataclass(frozen=True)
class CsvOptions:
    target: str | None = None  # None: a column named like TARGET_NAMES; "": none (label-free)
    ignore: Sequence[str] = ()  # columns left out of the features
    class_names: Sequence[str] | None = None
    limits: Limits = DEFAULT_LIMITS


class CsvFormat(DataFormat, name="csv", options=CsvOptions):
    """Text named .csv or .tsv, or text with one delimiter the same number of times a line."""

    def load(self, src: Source, options: CsvOptions) -> LoadedData:
        return _read_csv(src, options.target, options.ignore, options.class_names, options.limits)

    def sniff(self, head: Head) -> bool:
        if head.named_text:
            return head.suffix in (".csv", ".tsv")
        return head.free_text and sniff_delimiter(head.text or "") is not None


def _read_csv(
    src: Source,
    target: str | None,
    ignore: Sequence[str],
    class_names: Sequence[str] | None,
    limits: Limits = DEFAULT_LIMITS,
) -> LoadedData:
    text = decode_text(src.read(), src.name)
    assert text is not None
    if not text.strip():
        raise DataError(f"the CSV file {src.name!r} is empty")
    delimiter = "\t" if src.suffix == ".tsv" else (sniff_delimiter(text[: 1 << 16]) or ",")
    # Bounded before pandas parses anything: its cost grows with every column.
    header = next((line for line in text.splitlines() if line.strip()), "")
    columns = header.count(delimiter) + 1
    if columns > limits.max_columns:
        raise SizeLimitError(
            f"{src.name!r} has {columns:,} columns, over the {limits.max_columns:,}-column limit"
        )
    cells = columns * text.count("\n")
    if cells > limits.max_elements:
        raise SizeLimitError(
            f"{src.name!r} has about {cells:,} values, over the {limits.max_elements:,} limit"
        )
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter)
    except pd.errors.EmptyDataError:
        raise DataError(f"the CSV file {src.name!r} is empty") from None
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(
            f"{src.name!r} is not a well-formed CSV: {str(error).splitlines()[0]}"
        ) from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if len(frame) == 0:
        raise DataError(f"the CSV file {src.name!r} has a header ({few(columns)}) but no rows")
    duplicates = [c for c, n in Counter(columns).items() if n > 1]
    if duplicates:
        raise DataError(f"{src.name!r} has duplicate columns: {', '.join(duplicates)}")
    missing = [c for c in ignore if c not in columns]
    if missing:
        raise DataError(f"{src.name!r} has no column {missing[0]!r} to ignore")
    target_col = _target_column(columns, target, src.name)
    notes: list[str] = []
    if target is None and target_col is not None:
        notes.append(f"target column: {target_col!r} (chosen by its name)")
    features = [c for c in columns if c != target_col and c not in ignore]
    if not features:
        raise DataError(f"{src.name!r} has no feature columns besides the target {target_col!r}")
    numeric = frame[features].apply(pd.to_numeric, errors="coerce")
    # Not numeric: a value that is there in the file but is no number.
    bad = [c for c in features if (numeric[c].isna() & frame[c].notna()).any()]
    if bad:
        examples = ", ".join(
            f"{c} (e.g. {frame[c][numeric[c].isna() & frame[c].notna()].iloc[0]!r})"
            for c in bad[:4]
        )
        raise DataError(
            f"{src.name!r}: feature columns must be numbers; not numeric: {examples}. Encode "
            "them as numbers, or leave them out (ignore=[...], the app's 'Ignore columns')"
        )
    empty = numeric.isna().sum()
    if empty.any():
        where = ", ".join(f"{c} ({n})" for c, n in empty[empty > 0].items())
        raise DataError(f"{src.name!r} has empty or missing values in: {where}")
    values = numeric.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{src.name!r} has infinite values in its features")
    inputs = torch.from_numpy(values.astype(np.float32))
    if target_col is None:
        targets, names, label_map, target_notes = read_targets(None, src.name, "", class_names)
    else:
        column = frame[target_col]
        if column.isna().any():
            rows = [int(i) + 2 for i in np.flatnonzero(column.isna().to_numpy())[:5]]
            raise DataError(
                f"{src.name!r}: the target column {target_col!r} is empty on line(s) "
                f"{', '.join(map(str, rows))}"
            )
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            raw = column.to_numpy()
            targets, names, label_map, target_notes = read_targets(
                raw, src.name, target_col, class_names
            )
        else:
            labels = [str(v) for v in column.tolist()]
            targets, names, label_map, target_notes = categorical(
                labels, src.name, target_col, class_names
            )
    return LoadedData.of(
        inputs,
        targets,
        src,
        "csv",
        "tabular",
        class_names=tuple(names),
        feature_names=tuple(features),
        target_name=target_col or "",
        label_map=label_map,
        notes=tuple(notes + target_notes),
    )


def _target_column(columns: list[str], target: str | None, source: str) -> str | None:
    if target == "":
        return None
    if target is not None:
        if target not in columns:
            raise DataError(
                f"{source!r} has no column {target!r}; its columns are {few(columns, 12)}"
            )
        return target
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in TARGET_NAMES if n in lower), None)


def csv_columns(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> list[str]:
    """The header of a CSV file (for choosing the target column)."""
    src = as_source(source, name=name, what="data file")
    text = decode_text(src.head(1 << 16), src.name, strict=False) or ""
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "\t" if src.suffix == ".tsv" else (sniff_delimiter(text) or ",")
    return next(csv.reader([first], delimiter=delimiter), [])
