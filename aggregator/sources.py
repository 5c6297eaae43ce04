"""Read a source, check it against its declared schema, and type its rows.

A source column may be stored as its declared type or as text; text is cast with
``try_cast``, so a value that does not cast becomes a row-level ``_reason`` instead of an
exception or a silent null. The first failing check names the row's reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from feedgen.aggregator.schemas import SOURCE_KEYS, SOURCE_SCHEMAS, Column
from feedgen.jobs.errors import SourceSchemaError

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


def read_source(spark: SparkSession, name: str, spec: dict) -> DataFrame:
    """Read a source as stored (parquet, csv with a header, or json lines)."""
    path, fmt = spec["path"], spec.get("format", "parquet")
    try:
        if fmt == "csv":
            return spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(path)
        if fmt == "json":
            return spark.read.json(path)
        return spark.read.parquet(path)
    except Exception as err:  # AnalysisException for a missing path, unreadable files
        if "PATH_NOT_FOUND" in str(err) or "does not exist" in str(err):
            raise SourceSchemaError(
                f"source '{name}': path {path} does not exist; set sources.{name}.path in the config "
                f"(or run `feedgen sample-data --out DIR` for sample data)"
            ) from None
        raise


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
