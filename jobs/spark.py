"""The one place a SparkSession is built."""

from __future__ import annotations

import os
import sys
from typing import Any

from feedgen.core.java import check_java
from feedgen.generator.jvm import spark_jar


def spark_session(spark_conf: dict[str, Any] | None = None, master: str | None = None, app_name: str = "feedgen"):
    """Get or create the SparkSession from the ``spark`` section of the config."""
    check_java()
    from pyspark.sql import SparkSession

    conf = dict(spark_conf or {})
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master or conf.get("master") or "local[*]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(conf.get("shuffle_partitions", 8)))
        .config("spark.driver.memory", str(conf.get("driver_memory", "4g")))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "true")
        # Let HotSpot JIT-compile generated code: one method per projected column instead of a
        # huge fused method that the JVM interprets (thousands of predicate clauses).
        .config("spark.sql.codegen.hugeMethodLimit", "8000")
        .config("spark.sql.autoBroadcastJoinThreshold", str(conf.get("broadcast_threshold", 64 << 20)))
        .config("spark.sql.parquet.compression.codec", "zstd")
        .config("spark.driver.extraJavaOptions", "-Dlog4j2.level=error")
    )
    extra = dict(conf.get("conf") or {})
    jar = spark_jar()  # the JVM renderer of the built-in offer templates (None: Python renders)
    if jar:
        extra["spark.jars"] = ",".join(j for j in (str(extra.get("spark.jars") or ""), jar) if j)
    for key, value in extra.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
