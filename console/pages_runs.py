"""Pages for operators: runs, a run, the held-run review (approve / reject), feed
diagnostics, the audit log. Each page renders the dict its JSON twin under /api/v1 answers."""

from __future__ import annotations

from flask import Response, g, redirect, request

from feedgen.console import api, charts
from feedgen.console.pages import PageError, page, render


def _q(*allowed: str) -> dict[str, str]:
    # empty form fields (a filter left blank) are not filters
    return {k: v for k, v in api._query(*allowed).items() if v != ""}


@page("/runs", "runs.read")
def runs_page() -> Response:
    q = _q(*api.RUNS_QUERY)
    data = api.runs_data(q)
    return render("console/runs.html", "runs", {**data, "filters": q}, title="Runs", api_url=_api("/api/v1/runs"))


def _api(path: str) -> str:
    query = request.query_string.decode("ascii", "replace")
    return path + (f"?{query}" if query else "")


@page("/runs/<run_id>", "runs.read")
def run_page(run_id: str) -> Response:
    data = api.run_view_data(run_id, _q("runs", "decided"))
    past = data["history"]
    data["charts"] = {
        "events": charts.bars([(h["run_id"], h["events"], "held" if h["status"] == "held" else "")
                               for h in past], label="Events per run", unit=" events"),
        "stages": charts.bars([(name, seconds, "") for name, seconds in data["run"]["timings"].items()],
                              label="Stage timings of this run", unit=" s"),
    }
    data["sparks"] = {row["definition_id"]: charts.sparkline(
        [t["items"] for t in row["trend"]], label=f"{row['definition_id']} items over the last runs")
        for row in data["definitions"]}
    return render("console/run.html", "run", data, title=f"Run {run_id}", api_url=f"/api/v1/runs/{run_id}/details")


@page("/runs/<run_id>/review", "runs.read", methods=("GET", "POST"))
def review_page(run_id: str) -> Response:
    notice, status = "", 200
    if request.method == "POST":
        api.require(g.caller.actor, "runs.decide")
        action = request.form.get("action")
        reason = (request.form.get("reason") or "").strip()
        if action not in ("approve", "reject"):
            raise PageError(400, "choose Approve or Reject")
        if not reason or len(reason) > api.MAX_TEXT:
            notice, status = f"a reason is required (at most {api.MAX_TEXT} characters): say why, for the team", 400
        else:
            try:
                api.decide_run(api._run_id(run_id), action, g.caller.actor.name, reason)
                return redirect(f"/runs/{run_id}?decided={action}", code=303)
            except api.ApiError as err:
                notice, status = err.message, err.status
    data = api.review_data(run_id, _q("samples"))
    data["can_decide"] = g.caller.actor.can("runs.decide") and data["status"] == "held"
    return render("console/review.html", "review", {**data, "notice": notice}, title=f"Review run {run_id}",
                  api_url=f"/api/v1/runs/{run_id}/review", status=status)


@page("/definitions/<definition_id>/diagnostics", "runs.read")
def diagnostics_page(definition_id: str) -> Response:
    q = _q("run", "runs")
    data = api.diagnostics_data(definition_id, q)
    trend = data["trend"]
    data["chart"] = charts.bars([(t["run_id"], sum(t["excluded"].values()), "held") for t in trend],
                                label=f"Items excluded per run for {definition_id}", unit=" excluded")
    return render("console/diagnostics.html", "diagnostics", data, title=f"Diagnostics: {definition_id}",
                  api_url=_api(f"/api/v1/definitions/{definition_id}/diagnostics"))


@page("/audit", "audit.read")
def audit_page() -> Response:
    q = _q(*api.AUDIT_QUERY)
    data = api.audit_data(q)
    return render("console/audit.html", "audit", {**data, "filters": q}, title="Audit log",
                  api_url=_api("/api/v1/audit"))


__all__ = ["audit_page", "diagnostics_page", "review_page", "run_page", "runs_page"]
