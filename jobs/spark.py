"""The one place a SparkSession is built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

from feedgen.jobs.errors import BadInput


def java_tool(name: str) -> str | None:
    """The path of a JDK/JRE program (``java``, ``javac``): JAVA_HOME's first, then the PATH's."""
    found = shutil.which(name, path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get("JAVA_HOME") else None
    return found or shutil.which(name)


def check_java() -> None:
    """Fail in one line, with the fix, when Java 17+ is missing."""
    java = java_tool("java")
    hint = "install Java 17+ (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME"
    if not java:
        raise BadInput(f"Java not found: PySpark needs Java 17 or newer; {hint}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    version = _java_major(out)
    if version is not None and version < 17:
        raise BadInput(f"Java {version} found at {java}, PySpark 4 needs Java 17 or newer; {hint}")


def _java_major(text: str) -> int | None:
    import re

    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


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
    from feedgen.generator.jvm import spark_jar

    jar = spark_jar()  # the JVM renderer of the built-in offer templates (None: Python renders)
    if jar:
        extra["spark.jars"] = ",".join(j for j in (str(extra.get("spark.jars") or ""), jar) if j)
    for key, value in extra.items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
