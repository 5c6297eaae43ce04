"""Helpers for predicate tests: rows written as plain YAML/dicts become aggregate rows."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import types as T

from feedgen.generator.fields import to_utc

FIXTURES = Path(__file__).parent / "fixtures" / "predicates"


def conform(value: Any, dtype: T.DataType) -> Any:
    """``value`` (as YAML writes it) as the Python value Spark takes for ``dtype``."""
    if value is None:
        return None
    if isinstance(dtype, T.StructType):
        return {f.name: conform(value.get(f.name), f.dataType) for f in dtype.fields}
    if isinstance(dtype, T.ArrayType):
        return [conform(v, dtype.elementType) for v in value]
    if isinstance(dtype, T.MapType):
        return {k: conform(v, dtype.valueType) for k, v in value.items()}
    if isinstance(dtype, T.DecimalType):
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-dtype.scale))
    if isinstance(dtype, T.TimestampType):
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        return to_utc(value)
    if isinstance(dtype, (T.DoubleType, T.FloatType)):
        return float(value)
    if isinstance(dtype, (T.IntegerType, T.LongType, T.ShortType, T.ByteType)):
        return int(value)
    return value


def rows_for(schema: T.StructType, partial: list[dict]) -> list[dict]:
    """Full rows of ``schema``: fields not given are missing (None)."""
    return [conform(row, schema) for row in partial]


def dataframe(spark, schema: T.StructType, rows: list[dict]):
    return spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in rows], schema)


def load_fixture(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))
