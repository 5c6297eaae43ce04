"""Finding Java: the JDK programs PySpark and the JVM renderer need."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from feedgen.core.errors import BadInput


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
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


__all__ = ["check_java", "java_tool"]
