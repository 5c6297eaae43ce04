"""The floors the benchmarks share: what a plain Spark job of the same size costs.

Imported by the benchmark scripts (``benchmarks/`` is on ``sys.path`` when one of them runs).
"""

from __future__ import annotations

from pathlib import Path


def read_write_sources(spark, sources: str | Path, out: str | Path) -> None:
    """The aggregate's floor: read every source (Parquet under ``sources/<name>``) and write it
    back as Parquet under ``out/<name>``, with no checks and no joins."""
    from feedgen.core.config import SOURCE_NAMES

    for name in SOURCE_NAMES:
        spark.read.parquet(str(Path(sources) / name)).write.mode("overwrite").parquet(str(Path(out) / name))


def write_rendered_text(spark, texts: str | Path, out: str | Path) -> None:
    """The generate floor: write already rendered text (Parquet, one ``value`` column) as gzip
    text files, as a plain ``df.write.text`` job."""
    spark.read.parquet(str(texts)).write.mode("overwrite").option("compression", "gzip").text(str(out))
