"""Read a source, check it against its declared schema, and type its rows.

A source column may be stored as its declared type or as text; text is cast with
``try_cast``, so a value that does not cast becomes a row-level ``_reason`` instead of an
exception or a silent null. The first failing check names the row's reason.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feedgen.aggregator.schemas import (
    CUSTOMER_SOURCES,
    OFFER_SOURCES,
    SOURCE_KEYS,
    SOURCE_SCHEMAS,
    Column,
)
from feedgen.core.errors import SourceSchemaError

log = logging.getLogger(__name__)

RAW_PREFIX = "_raw_"
REASON = "_reason"

_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


@dataclass
class TypedSource:
    """A source with declared columns typed, ``_raw_<col>`` kept where a cast happened, and ``_reason``."""

    name: str
    path: str
    df: DataFrame
    columns: tuple[Column, ...]

    def quarantine_columns(self) -> list[SparkColumn]:
        """The rows as they were read (raw values), for the quarantine."""
        cols = []
        for c in self.columns:
            raw = RAW_PREFIX + c.name
            cols.append(F.col(raw).alias(c.name) if raw in self.df.columns else F.col(c.name))
        return cols


def sources_for(entities: Iterable[str]) -> tuple[str, ...]:
    """The sources the aggregates of ``entities`` (offer, customer) are built from."""
    wanted = set(entities)
    return (OFFER_SOURCES if "offer" in wanted else ()) + (CUSTOMER_SOURCES if "customer" in wanted else ())


def _set_in(config: Any, name: str) -> str:
    var = f"FEEDGEN__SOURCES__{name.upper()}__PATH"
    if var in (getattr(config, "overrides", None) or []):
        return f"environment variable {var}"
    return getattr(config, "source_label", "the config")


def _has_data_file(folder: Path) -> bool:
    # Spark skips names starting with "_" or "." (_SUCCESS, .crc files, _temporary/)
    for _dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        if any(not f.startswith(("_", ".")) for f in filenames):
            return True
    return False


def check_source_path(name: str, path: str, set_in: str = "the config", fmt: str | None = None) -> None:
    """Stop before Spark starts when a local source path is missing, holds no data files or,
    given the declared ``fmt``, holds a file that is not in that format (``_check_format``).

    Remote paths (``s3a://``, ``hdfs://``) are left to Spark (``read_source`` words its errors).
    """
    if "://" in path and not path.startswith("file://"):
        return
    local = path.removeprefix("file://")
    key = f"sources.{name}.path"
    if glob.has_magic(local):
        found = [Path(p) for p in glob.glob(local)]
    else:
        found = [Path(local)] if Path(local).exists() else []
    if not found:
        raise SourceSchemaError(
            f"source '{name}': path {path} does not exist ({key}, set in {set_in}); point {key} at "
            f"the {name} export (or run `feedgen sample-data --out DIR` for sample data)")
    if not any(p.is_file() or _has_data_file(p) for p in found):
        raise SourceSchemaError(
            f"source '{name}': {path} holds no data files ({key}, set in {set_in}); write the "
            f"{name} export there first, or point {key} at the folder that holds it")
    if fmt is not None:
        _check_format(name, fmt, found, set_in)


def check_sources(config: Any, entities: Iterable[str]) -> None:
    """``check_source_path`` for every source the aggregates of ``entities`` read."""
    for name in sources_for(entities):
        spec = config["sources"][name]
        check_source_path(name, str(spec["path"]), _set_in(config, name), str(spec.get("format") or "parquet"))


_PARQUET_MAGIC = (b"PAR1", b"PARE")  # plain, and encrypted footers
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_CHECKED_FILES = 10_000


def _data_files(found: list[Path]) -> Iterator[Path]:
    """The files Spark reads under ``found`` (as ``_has_data_file`` sees them), at most ``_MAX_CHECKED_FILES``."""
    count = 0
    for top in found:
        if top.is_file():
            walked: Iterable[tuple[str, list[str], list[str]]] = [(str(top.parent), [], [top.name])]
        else:
            walked = os.walk(top)
        for dirpath, dirnames, filenames in walked:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
            for f in sorted(filenames):
                if f.startswith(("_", ".")) and not top.is_file():
                    continue
                count += 1
                if count > _MAX_CHECKED_FILES:
                    return
                yield Path(dirpath) / f


def _looks_like(head: bytes) -> str:
    if head[:4] in _PARQUET_MAGIC:
        return "Parquet"
    if head[:2] == _GZIP_MAGIC:
        return "gzip-compressed"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON"
    return "text (CSV?)" if head and all(32 <= b < 127 or b in b"\t\r\n" for b in head[:64]) else "another format"


def _check_format(name: str, fmt: str, found: list[Path], set_in: str) -> None:
    """A local data file that cannot be the declared format stops here, before Spark reads it
    (Spark would fail deep inside a job, with a Java trace, after its start-up)."""
    key = f"sources.{name}.format"
    for file in _data_files(found):
        size = file.stat().st_size
        if size == 0:
            continue  # Spark skips empty files
        with open(file, "rb") as fh:
            head = fh.read(64)
            fh.seek(max(0, size - 4))
            tail = fh.read(4)
        looks = _looks_like(head)
        if fmt == "parquet" and (size < 12 or head[:4] not in _PARQUET_MAGIC or tail not in _PARQUET_MAGIC):
            fix = (f"set {key} to json" if looks == "JSON" else f"set {key} to csv" if looks.startswith("text")
                   else "write the export again")
            raise SourceSchemaError(
                f"source '{name}': {file} is not a Parquet file ({size} bytes, looks like {looks}); {key} is "
                f"parquet: point sources.{name}.path (set in {set_in}) at the {name} export in Parquet, or {fix}")
        if fmt in ("csv", "json") and looks == "Parquet":
            raise SourceSchemaError(
                f"source '{name}': {file} is a Parquet file but {key} is {fmt}; set {key} to parquet, or "
                f"point sources.{name}.path (set in {set_in}) at the " + ("CSV export (with a header row)"
                                                                          if fmt == "csv" else "JSON lines export"))
        if fmt in ("csv", "json") and file.suffix == ".gz" and head[:2] != _GZIP_MAGIC:
            raise SourceSchemaError(
                f"source '{name}': {file} is named .gz but is not gzip-compressed (looks like {looks}); "
                "Spark decompresses by the file name: rename it without .gz, or compress it with gzip")


def _spark_reason(err: BaseException) -> str:
    """One line from a Spark/Py4J error: its deepest cause, else its error class and message."""
    text = str(err)
    causes = re.findall(r"Caused by: [\w.$]+(?:Exception|Error): ([^\n]+)", text)
    if causes:
        reason = causes[-1]
    else:
        m = re.search(r"\[([A-Z_]+(?:\.[A-Z_]+)*)\][^\n]*", text)
        reason = m.group(0) if m else (text.strip().splitlines() or [type(err).__name__])[0]
    reason = reason.strip()
    return reason[:300] + ("..." if len(reason) > 300 else "")


def unreadable_source(name: str, path: str, fmt: str, err: BaseException) -> SourceSchemaError:
    """The one-line SourceSchemaError for a source Spark could not read; the full trace goes to the debug log."""
    log.debug("source '%s' (%s): Spark could not read it as %s", name, path, fmt, exc_info=err)
    expected = {"parquet": "Parquet files", "csv": "CSV files with a header row",
                "json": "JSON lines (one object per line)"}.get(fmt, fmt)
    return SourceSchemaError(
        f"source '{name}': {path} could not be read as {fmt} ({_spark_reason(err)}); sources.{name}.format "
        f"is {fmt}, so the path must hold {expected}: fix or re-export the files, or set sources.{name}.format "
        "to what they are (parquet, csv, json)")


@contextmanager
def quiet_spark(spark: SparkSession) -> Iterator[None]:
    """Spark's own log off while a source is read: a file it cannot read would print a Java
    trace per failed task to stderr; the error reaches Python anyway and is worded there."""
    sc = spark.sparkContext
    try:
        level = str(sc._jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel())  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - not a classic JVM session: leave the level alone
        yield
        return
    sc.setLogLevel("OFF")
    try:
        yield
    finally:
        sc.setLogLevel(level)


def read_source(spark: SparkSession, name: str, spec: dict) -> DataFrame:
    """Read a source as stored (parquet, csv with a header, or json lines)."""
    path, fmt = spec["path"], spec.get("format", "parquet")
    try:
        with quiet_spark(spark):
            if fmt == "csv":
                df = spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(path)
            elif fmt == "json":
                df = spark.read.json(path)
            else:
                return spark.read.parquet(path)
    except Exception as err:  # AnalysisException for a missing path, Py4JJavaError for unreadable files
        if "PATH_NOT_FOUND" in str(err) or "does not exist" in str(err):
            raise SourceSchemaError(
                f"source '{name}': path {path} does not exist; set sources.{name}.path in the config "
                f"(or run `feedgen sample-data --out DIR` for sample data)"
            ) from None
        raise unreadable_source(name, path, fmt, err) from None
    if not df.columns:
        # empty csv or json files: zero rows, and no header to take the columns from
        schema = T.StructType([T.StructField(c.name, c.dtype, True) for c in SOURCE_SCHEMAS[name]])
        return spark.createDataFrame([], schema)
    return df


def _compatible(actual: T.DataType, declared: T.DataType) -> bool:
    if isinstance(actual, T.StringType):
        return not isinstance(declared, (T.MapType, T.StructType, T.ArrayType))
    if isinstance(declared, _NUMERIC):
        return isinstance(actual, _NUMERIC)
    if isinstance(declared, T.TimestampType):
        return isinstance(actual, (T.TimestampType, T.TimestampNTZType, T.DateType))
    if isinstance(declared, (T.MapType, T.StructType)):
        return type(actual) is type(declared)
    return type(actual) is type(declared)


def check_schema(name: str, path: str, df: DataFrame) -> None:
    """Stop before anything is written if a required column is missing or unusable."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    for col in SOURCE_SCHEMAS[name]:
        if col.name not in fields:
            if col.required and set(fields) == {"_corrupt_record"}:
                raise SourceSchemaError(
                    f"source '{name}' ({path}): no line is a JSON object (Spark put every line in "
                    f"_corrupt_record); sources.{name}.format is json, so write JSON lines (one object "
                    f"per line), or set sources.{name}.format to what the files are (parquet, csv)")
            if col.required:
                raise SourceSchemaError(
                    f"source '{name}' ({path}): required column '{col.name}' is missing; "
                    f"expected type {col.dtype.simpleString()}; add the column or map it in the source"
                )
            continue
        actual = fields[col.name]
        if not _compatible(actual, col.dtype):
            raise SourceSchemaError(
                f"source '{name}' ({path}): column '{col.name}' has type {actual.simpleString()}, "
                f"expected {col.dtype.simpleString()} (or text that casts to it); fix the source's type"
            )


def type_source(name: str, path: str, df: DataFrame) -> TypedSource:
    """Cast declared columns, add missing optional ones as nulls, and set row-level reasons."""
    check_schema(name, path, df)
    present = set(df.columns)
    select: list[SparkColumn] = []
    reasons: list[SparkColumn] = []
    key = SOURCE_KEYS[name]
    for col in SOURCE_SCHEMAS[name]:
        if col.name not in present:
            select.append(F.lit(None).cast(col.dtype).alias(col.name))
            continue
        actual = df.schema[col.name].dataType
        value = F.col(col.name)  # resolved on the typed frame, below
        if actual == col.dtype:
            select.append(F.col(col.name))
        else:
            text = isinstance(actual, T.StringType)
            src = F.trim(F.col(col.name)) if text else F.col(col.name)
            select.append(src.try_cast(col.dtype).alias(col.name))
            select.append(F.col(col.name).alias(RAW_PREFIX + col.name))
            raw = F.col(RAW_PREFIX + col.name)
            given = (F.trim(raw) != "") if text else raw.isNotNull()
            reasons.append(F.when(given & value.isNull(), F.lit(f"invalid {col.name}: not a {col.dtype.simpleString()}")))
        if col.required:
            empty = value.isNull()
            if isinstance(col.dtype, T.StringType):
                empty = empty | (F.trim(value) == "")
            label = f"missing {col.name}" if col.name != key else f"missing {key}"
            reasons.append(F.when(empty, F.lit(label)))
    typed = df.select(*select)
    # Column order decides which reason a row gets: the key first, and for each column
    # "invalid X" before "missing X".
    reason = F.coalesce(*reasons) if reasons else F.lit(None).cast("string")
    return TypedSource(name, path, typed.withColumn(REASON, reason), SOURCE_SCHEMAS[name])


def add_reason(ts: TypedSource, condition: SparkColumn, reason: str | SparkColumn) -> TypedSource:
    """Set ``_reason`` where it is still null and ``condition`` holds."""
    label = F.lit(reason) if isinstance(reason, str) else reason
    df = ts.df.withColumn(REASON, F.coalesce(F.col(REASON), F.when(condition, label)))
    return TypedSource(ts.name, ts.path, df, ts.columns)


def drop_duplicates_by_key(ts: TypedSource, key: str, newest_first: list[SparkColumn]) -> TypedSource:
    """Keep one valid row per key, deterministically; the others get 'duplicate <key>'."""
    from pyspark.sql import Window

    tiebreak = F.xxhash64(*[F.col(c.name) for c in ts.columns if not isinstance(c.dtype, T.MapType)])
    w = Window.partitionBy(key).orderBy(F.col(REASON).isNull().desc(), *newest_first, tiebreak.desc())
    df = ts.df.withColumn("_rank", F.row_number().over(w))
    df = df.withColumn(REASON, F.coalesce(F.col(REASON), F.when(F.col("_rank") > 1, F.lit(f"duplicate {key}")))).drop("_rank")
    return TypedSource(ts.name, ts.path, df, ts.columns)
