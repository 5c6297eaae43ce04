"""What a crash costs: a full `feedgen run` vs resuming it after kill -9 at each stage.

    .venv/bin/python benchmarks/pipeline.py [--small]

Prints the wall time of an uninterrupted run (per stage, from run.json), then for each
crash point the time of the resumed invocation and its ratio to the full run: resuming
after publish or emit must not start Spark or redo the generate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFINITIONS = """\
feeds:
  - id: electronics
    template: google_merchant_rss
    where: {field: category.path, starts_with: "Electronics"}
    delivery: {destinations: [meta_catalog_batch]}
  - id: cheap
    template: meta_catalog_csv
    where: {field: price.amount, lt: 50}
"""
CRASHES = ("aggregate:done", "generate:after-parts", "publish:pointer", "emit:outbox-file")


def _feedgen(*args: str, crash: str | None = None) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDGEN") and k != "KAFKA_BOOTSTRAP"}
    if crash:
        env["FEEDGEN_TEST_CRASH_AT"] = crash
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "feedgen.jobs.cli", "--json-logs", *args], env=env,
                          capture_output=True, text=True)
    return time.monotonic() - t0, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="2,000 offers instead of 50,000")
    args = parser.parse_args()
    offers = 2_000 if args.small else 50_000
    from feedgen.aggregator.sample_data import write_sample_data

    top = Path(tempfile.mkdtemp(prefix="feedgen-bench-pipeline-"))
    try:
        (top / "defs").mkdir()
        (top / "defs" / "defs.yaml").write_text(DEFINITIONS)
        (top / "cfg.yaml").write_text("spark: {shuffle_partitions: 4, driver_memory: 2g}\n")
        clean = top / "clean"
        write_sample_data(clean / "sample", offers=offers, customers=100, seed=7)
        common = ["--config", str(top / "cfg.yaml"), "--definitions", str(top / "defs"),
                  "--as-of", "2026-11-02T06:00:00Z"]
        full_root = top / "full"
        shutil.copytree(clean, full_root)
        full, rc = _feedgen("run", "--root", str(full_root), *common)
        assert rc == 0, "the uninterrupted run failed"
        run_id = next((full_root / "runs").iterdir()).name
        stages = json.loads((full_root / "runs" / run_id / "run.json").read_text())["stages"]
        print(f"offers: {offers:,}; uninterrupted run: {full:.1f}s wall "
              + ", ".join(f"{k} {v.get('seconds', 0):.1f}s" for k, v in stages.items()))
        print(f"{'killed at':<22} {'crashed run':>12} {'resume':>8} {'resume/full':>12} {'total/full':>11}")
        for crash in CRASHES:
            root = top / crash.replace(":", "-")
            shutil.copytree(clean, root)
            crashed, rc = _feedgen("run", "--root", str(root), *common, crash=crash)
            assert rc == -9, f"{crash}: expected SIGKILL, got {rc}"
            rid = next((root / "runs").iterdir()).name
            resumed, rc = _feedgen("run", "--config", str(top / "cfg.yaml"), "--root", str(root), "--resume", rid)
            assert rc == 0, f"{crash}: resume failed"
            print(f"{crash:<22} {crashed:>11.1f}s {resumed:>7.1f}s {resumed / full:>12.2f} "
                  f"{(crashed + resumed) / full:>11.2f}")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
