"""Helpers for the file server tests: publish small runs for real, serve the app on loopback."""

from __future__ import annotations

import base64
import hashlib
import http.client
import random
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from feedgen.core.config import Config
from feedgen.core.runs import new_run_record, parse_as_of, write_run
from feedgen.generator.parts import assemble, write_manifest, write_part
from feedgen.jobs.publish import publish_run

TOKENS = {"feed-a": "token-a", "feed-b": "token-b", "seg-a": "token-s"}
ADMIN_TOKEN = "admin-secret"
XML_HEADER = ('<?xml version="1.0" encoding="UTF-8"?>\n'
              '<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel>\n'
              '<title>feedgen test</title>\n')
XML_FOOTER = "</channel></rss>\n"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def server_section(**extra: Any) -> dict[str, Any]:
    return {"tokens": {k: sha(v) for k, v in TOKENS.items()},
            "admin_token_sha256": sha(ADMIN_TOKEN), **extra}


def xml_items(run_tag: str, count: int, payload: int = 0, seed: int = 0) -> list[str]:
    """``count`` RSS items; ``payload`` random bytes each make the gzip members big."""
    rng = random.Random(seed)
    return [
        f"<item><g:id>{i}</g:id><title>Offer {i} of {run_tag}</title>"
        + (f"<g:custom_label_0>{base64.b64encode(rng.randbytes(payload)).decode()}</g:custom_label_0>"
           if payload else "")
        + "</item>\n"
        for i in range(count)
    ]


def publish_definition(config: Config, run_id: str, definition_id: str, items: list[str], *,
                       kind: str = "feed", fmt: str = "xml", items_per_part: int = 10,
                       header: str = XML_HEADER, footer: str = XML_FOOTER,
                       max_file_items: int | None = None) -> Path:
    """Write one definition's parts and manifest into run ``run_id`` and publish the run for real."""
    folder_name = "feeds" if kind == "feed" else "segments"
    folder = Path(config.root) / "runs" / run_id / folder_name / definition_id
    parts = []
    for n, i in enumerate(range(0, len(items), items_per_part)):
        chunk = items[i:i + items_per_part]
        parts.append(write_part(folder, f"part-{n:05d}.{fmt}.gz", "".join(chunk).encode(), len(chunk)))
    as_of = f"{run_id[0:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:{run_id[11:13]}:{run_id[13:15]}Z"
    write_manifest(folder, definition_id=definition_id, kind=kind, run_id=run_id, as_of=as_of,
                   template="google_merchant_rss" if fmt == "xml" else "audience_csv", fmt=fmt,
                   header=header, footer=footer, parts=parts, max_file_items=max_file_items)
    record = new_run_record(run_id, parse_as_of(as_of), "local[1]", status="generating")
    record["definitions"] = {definition_id: {"kind": kind, "items": len(items)}}
    write_run(config.root, record)
    publish_run(config, run_id)
    return folder


def expected(folder: Path, file_index: int = 0, compressed: bool = False) -> bytes:
    return assemble(folder, file_index, compressed=compressed)


class LiveServer:
    """The WSGI app on a free loopback port, served by werkzeug in a thread."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        # stop() waits for the serving loop's next poll: 0.05 s instead of the default 0.5 s
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def raw(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send ``target`` exactly as written (no client-side normalisation of ``..``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            for k, v in (headers or {}).items():
                conn.putheader(k, v)
            conn.endheaders()
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
