#!/usr/bin/env python3
"""Reads a tickflow Parquet tree with pyarrow, polars and DuckDB, each the way the plugin README
documents (hive partitioning over <root>/<dataset>/date=YYYY-MM-DD/hour=HH/*.parquet), and prints
one JSON object: {reader: {dataset: {"count": N, "rows": [canonical row, ...]}}}.

A canonical row is every column but the partition columns (date, hour), sorted by name, as
`name=value` joined by `|`: integers in decimal, floats as `f:` + the hex of their IEEE-754 bits,
strings as `s:` + the text, bytes as `b:` + hex, timestamps as integer nanoseconds since the
epoch, nulls as `null`. The engine's tests build the same lines from the records they fed in.

Usage: read_tree.py ROOT DATASET[,DATASET...] [--readers pyarrow,polars,duckdb] [--counts-only]
       read_tree.py --files ROOT
The second form opens every file under ROOT whose name ends in .parquet (at any depth) with
pyarrow.parquet, reads it whole, and prints {"files": [{"path", "rows", "error"}]}: an invalid
file has its error text and no rows.

A missing reader library is an error naming it (exit 2): the tests never skip a reader.
"""

import json
import struct
import sys

PARTITION_COLUMNS = {"date", "hour"}


def canonical(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "f:" + struct.pack("<d", value).hex()
    if isinstance(value, str):
        return "s:" + value
    if isinstance(value, (bytes, bytearray)):
        return "b:" + bytes(value).hex()
    raise TypeError(f"no canonical form for {type(value).__name__}: {value!r}")


def lines(names, columns, counts_only):
    keep = sorted(
        (name, index) for index, name in enumerate(names) if name not in PARTITION_COLUMNS
    )
    count = len(columns[0]) if columns else 0
    if counts_only:
        return {"count": count, "columns": [name for name, _ in keep]}
    rows = [
        "|".join(f"{name}={canonical(columns[index][row])}" for name, index in keep)
        for row in range(count)
    ]
    rows.sort()
    return {"count": count, "columns": [name for name, _ in keep], "rows": rows}


def read_pyarrow(root, dataset, counts_only):
    import pyarrow as pa
    import pyarrow.dataset as ds

    table = ds.dataset(f"{root}/{dataset}", format="parquet", partitioning="hive").to_table()
    names, columns = [], []
    for field, column in zip(table.schema, table.columns):
        kind = field.type
        if pa.types.is_dictionary(kind):
            column = column.cast(kind.value_type)
            kind = kind.value_type
        if pa.types.is_timestamp(kind):
            column = column.cast(pa.int64())
        names.append(field.name)
        columns.append(column.to_pylist())
    return lines(names, columns, counts_only)


def read_polars(root, dataset, counts_only):
    import polars as pl

    frame = pl.scan_parquet(f"{root}/{dataset}/**/*.parquet", hive_partitioning=True).collect()
    casts = []
    for name, kind in frame.schema.items():
        if isinstance(kind, pl.Datetime):
            casts.append(pl.col(name).cast(pl.Int64))
        elif isinstance(kind, (pl.Categorical, pl.Enum)):
            casts.append(pl.col(name).cast(pl.String))
    if casts:
        frame = frame.with_columns(casts)
    names = frame.columns
    columns = [frame.get_column(name).to_list() for name in names]
    return lines(names, columns, counts_only)


def read_duckdb(root, dataset, counts_only):
    import duckdb

    connection = duckdb.connect()
    source = f"read_parquet('{root}/{dataset}/**/*.parquet', hive_partitioning=true)"
    relation = connection.sql(f"SELECT * FROM {source}")
    selects = []
    for name, kind in zip(relation.columns, relation.types):
        quoted = '"' + name.replace('"', '""') + '"'
        if str(kind).upper().startswith("TIMESTAMP"):
            selects.append(f"epoch_ns({quoted}) AS {quoted}")
        elif str(kind).upper().startswith("ENUM"):
            selects.append(f"CAST({quoted} AS VARCHAR) AS {quoted}")
        else:
            selects.append(quoted)
    result = connection.sql(f"SELECT {', '.join(selects)} FROM {source}")
    names = result.columns
    rows = result.fetchall()
    columns = [[row[index] for row in rows] for index in range(len(names))]
    return lines(names, columns, counts_only)


READERS = {"pyarrow": read_pyarrow, "polars": read_polars, "duckdb": read_duckdb}


def check_files(root):
    import os

    import pyarrow.parquet as pq

    files = []
    for directory, _, names in os.walk(root):
        for name in sorted(names):
            if not name.endswith(".parquet"):
                continue
            path = os.path.join(directory, name)
            try:
                rows = pq.read_table(path).num_rows
                files.append({"path": path, "rows": rows, "error": None})
            except Exception as error:  # any failure to read is what this mode reports
                files.append({"path": path, "rows": None, "error": f"{type(error).__name__}: {error}"})
    files.sort(key=lambda entry: entry["path"])
    return {"files": files}


def main(argv):
    if len(argv) == 3 and argv[1] == "--files":
        try:
            import pyarrow  # noqa: F401
        except ImportError as error:
            print(f"read_tree.py: missing Python reader library pyarrow ({error}). Install the pinned versions with .ci/run.", file=sys.stderr)
            return 2
        json.dump(check_files(argv[2]), sys.stdout)
        return 0
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    root, datasets = argv[1], [name for name in argv[2].split(",") if name]
    readers = list(READERS)
    counts_only = "--counts-only" in argv
    if "--readers" in argv:
        readers = argv[argv.index("--readers") + 1].split(",")
    missing = []
    for reader in readers:
        try:
            __import__(reader)
        except ImportError as error:
            missing.append(f"{reader} ({error})")
    if missing:
        print(
            "read_tree.py: missing Python reader libraries: "
            + ", ".join(missing)
            + ". Install the pinned versions with .ci/run (pyarrow, polars, duckdb).",
            file=sys.stderr,
        )
        return 2
    output = {
        reader: {dataset: READERS[reader](root, dataset, counts_only) for dataset in datasets}
        for reader in readers
    }
    json.dump(output, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
