"""Helpers for the pipeline tests: a small sample root, `feedgen run` in a subprocess, feed items."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

DAY1, DAY2 = "2026-11-02T06:00:00Z", "2026-11-03T06:00:00Z"
CONFIG = """\
spark:
  master: "local[2]"
  shuffle_partitions: 2
  driver_memory: 1g
"""


def write_config(folder: Path, extra: str = "") -> Path:
    path = folder / "feedgen.yaml"
    path.write_text(CONFIG + extra, encoding="utf-8")
    return path


def write_definitions(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "defs.yaml").write_text(text, encoding="utf-8")
    return folder


def write_sample(root: Path, variant: int, offers: int = 500, customers: int = 200) -> None:
    from feedgen.aggregator.sample_data import write_sample_data

    write_sample_data(root / "sample", offers=offers, customers=customers, seed=7, variant=variant)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Kafka or feedgen override, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FEEDGEN") and k != "KAFKA_BOOTSTRAP"}
    env.update(extra)
    return env


def feedgen(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """``feedgen <args>`` in its own process (its own SparkContext)."""
    return subprocess.run([sys.executable, "-m", "feedgen.jobs.cli", "--json-logs", *args],
                          env=env or clean_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def feedgen_here(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``feedgen <args>`` in this process, on the suite's SparkSession: what ``feedgen()`` returns.

    For a test about what a command does rather than about its own process (exit code, output,
    files): a Spark stage in a new process pays a JVM start and its warm-up again. Same environment
    as ``clean_env()``; the root logger the command sets up is put back afterwards.
    """
    import contextlib
    import logging
    import traceback

    from click.testing import CliRunner

    from feedgen.jobs.cli import main

    unset = {k: None for k in os.environ if k.startswith("FEEDGEN") or k == "KAFKA_BOOTSTRAP"}
    logger = logging.getLogger()
    handlers, level = logger.handlers[:], logger.level
    try:
        with contextlib.chdir(cwd or Path.cwd()):
            result = CliRunner().invoke(main, ["--json-logs", *args], env=unset)
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
    stderr, code = result.stderr, result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))  # as the process would print it
    return subprocess.CompletedProcess(["feedgen", *args], code, result.stdout, stderr)


def only_new_run(root: Path, known: set[str]) -> str:
    runs = {p.name for p in (root / "runs").iterdir() if p.is_dir()} - known
    assert len(runs) == 1, runs
    return runs.pop()


def run_json(root: Path, run_id: str) -> dict:
    return json.loads((root / "runs" / run_id / "run.json").read_text(encoding="utf-8"))


def pointer_runs(root: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["run_id"] for p in sorted((root / "current").glob("*.json"))}


def doc_items(body: bytes, fmt: str) -> tuple[str, list[str]]:
    """(header text, sorted item fragments) of a whole feed/export document."""
    text = body.decode("utf-8")
    if fmt == "xml":
        items = re.findall(r"<item>.*?</item>", text, flags=re.S)
        return text.split("<item>", 1)[0], sorted(items)
    lines = text.splitlines()
    return (lines[0] if lines else ""), sorted(lines[1:])


def published_docs(root: Path) -> dict[str, tuple[str, list[str]]]:
    """Every published definition's file 0, read through its pointer, run id masked."""
    from feedgen.generator.parts import assemble, read_manifest

    out = {}
    for pointer_file in sorted((root / "current").glob("*.json")):
        pointer = json.loads(pointer_file.read_text())
        if pointer.get("kind") == "membership":
            continue  # the lookup index, not a document
        folder = root / Path(pointer["manifest"]).parent
        manifest = read_manifest(folder)
        header, items = doc_items(assemble(folder), manifest["format"])
        out[pointer["definition_id"]] = (header.replace(pointer["run_id"], "RUN"), items)
    return out


def event_content(event: dict) -> tuple:
    """An event without its run-specific fields (run_id, event_id)."""
    return (event["definition_id"], event["key"], event["op"], tuple(event.get("changed") or ()),
            json.dumps(event.get("data"), sort_keys=True), tuple(event["destinations"]), event["as_of"])


def outbox_events(root: Path, run_id: str) -> list[dict]:
    out = []
    for path in sorted((root / "runs" / run_id / "events").glob("*.jsonl")):
        out.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return out


class Downloader(threading.Thread):
    """A client fetching every feed over HTTP (the file server) in a loop, checking each body.

    Every body must be exactly the document of the run named in ``X-Feedgen-Run``, as
    assembled from that run's immutable folder: never partial, never two runs mixed.
    """

    def __init__(self, root: Path, feed_ids: list[str]) -> None:
        super().__init__(daemon=True)
        from feedgen.core.config import load_config
        from feedgen.fileserver.app import create_app

        config = load_config(root=str(root), environ={})
        config.data["server"]["public"] = list(feed_ids)
        self.client = create_app(config).test_client()
        self.root = root
        self.feed_ids = feed_ids
        self.seen: dict[str, set[str]] = {f: set() for f in feed_ids}
        self.problems: list[str] = []
        self.downloads = 0
        self._halt = threading.Event()

    def run(self) -> None:
        from feedgen.generator.parts import assemble

        while not self._halt.is_set():
            for feed_id in self.feed_ids:
                resp = self.client.get(f"/feeds/{feed_id}")
                if resp.status_code != 200:
                    self.problems.append(f"{feed_id}: HTTP {resp.status_code}")
                    continue
                run_id = resp.headers["X-Feedgen-Run"]
                expected = assemble(self.root / "runs" / run_id / "feeds" / feed_id)
                if resp.data != expected:
                    self.problems.append(f"{feed_id}: body of {len(resp.data)} bytes is not run {run_id}'s document")
                self.seen[feed_id].add(run_id)
                self.downloads += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def published_exports(root: Path) -> dict[str, tuple[str, list[str]]]:
    """Every published segment's extra exports (``segments/<id>/exports/<name>``), run id masked."""
    from feedgen.generator.parts import assemble, read_manifest

    out = {}
    for pointer_file in sorted((root / "current").glob("*.json")):
        pointer = json.loads(pointer_file.read_text())
        for folder in sorted((root / Path(pointer["manifest"]).parent / "exports").glob("*")):
            header, items = doc_items(assemble(folder), read_manifest(folder)["format"])
            out[f"{pointer['definition_id']}/{folder.name}"] = (header.replace(pointer["run_id"], "RUN"), items)
    return out


class StandaloneSpark:
    """A Spark standalone cluster on loopback: one master and one worker (``spark-class``)."""

    def __init__(self, work: Path, cores: int = 2, memory: str = "1g") -> None:
        from tests.support import free_port

        self.work = work
        self.port, self.ui_port, self.worker_ui = free_port(), free_port(), free_port()
        self.cores, self.memory = cores, memory
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        import pyspark

        from tests.support import TEST_JVM_OPTS

        return clean_env(SPARK_HOME=str(Path(pyspark.__file__).parent), SPARK_LOCAL_IP="127.0.0.1",
                         SPARK_DAEMON_MEMORY="256m", SPARK_DAEMON_JAVA_OPTS=TEST_JVM_OPTS,
                         SPARK_SUBMIT_OPTS=TEST_JVM_OPTS, PYSPARK_PYTHON=sys.executable,
                         PYSPARK_DRIVER_PYTHON=sys.executable)

    def _start(self, name: str, *args: str) -> None:
        import pyspark

        spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the process
        self.procs.append(subprocess.Popen([str(spark_class), *args], env=self.env(), stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def start(self, timeout: float = 120.0) -> StandaloneSpark:
        import urllib.request

        from tests.support import wait_for_port

        self.work.mkdir(parents=True, exist_ok=True)
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        wait_for_port(self.port, timeout)
        self._start("worker", "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                    "--cores", str(self.cores), "--memory", self.memory, "--webui-port", str(self.worker_ui),
                    "--work-dir", str(self.work / "worker"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as resp:
                    if json.load(resp).get("aliveworkers", 0) >= 1:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"no worker registered with {self.url} after {timeout}s; see {self.work}/*.log")

    def stop(self) -> None:
        import signal

        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self.procs.clear()
