"""Built-in plugin: a webhook notifier. POSTs JSON when a run finishes or fails, and when `proxpipe drift` finds
drift: a `text` field that Slack, Mattermost and Discord-compatible (`/slack`) endpoints show, plus structured
fields. The URL comes from an
environment variable and is a secret (it holds the endpoint's token). A failing or hanging endpoint is
retried a bounded number of times with a timeout, then only warns: it never breaks or hangs the run."""

from __future__ import annotations

import json
import time

from proxpipe.api.hookspecs import hookimpl
from proxpipe.base import schema
from proxpipe.base.console import console, seconds
from proxpipe.base.retry import Backoff
from proxpipe.base.schema import Field
from proxpipe.base.secrets import mask

NAME = "webhook"
EVENTS = ("finished", "failed", "drift")
OPTIONS = {
    "url": Field(schema.SECRET, "The endpoint, as a ${ENV_VAR} reference; empty or unset: no notifications."),
    "timeout": Field(schema.NUMBER, "Seconds one POST may take.", default=5, minimum=0.1, maximum=60),
    "retries": Field(schema.INT, "Further tries after a failed POST.", default=2, minimum=0, maximum=5),
    "on": Field(schema.LIST, "When to notify: finished (successful runs), failed, drift (drift was found).",
                default=list(EVENTS), items=Field(schema.STR, choices=EVENTS)),
    "notify_noop": Field(schema.BOOL, "Also notify runs in which every stage was up to date.", default=False),
}


def payload(run, ok: bool, outcomes) -> dict:
    failed = next((o for o in outcomes if o.status in ("failed", "interrupted")), None)
    duration = (run.finished or time.time()) - run.started
    parts = ", ".join(f"{o.name} {seconds(o.duration)}" if o.status == "ran" else f"{o.name} {o.status}"
                      for o in outcomes)
    if ok:
        text = f"✅ {run.command} on {run.environment} succeeded in {seconds(duration)}: {parts}"
    elif run.interrupted:
        where = f" at {failed.name}" if failed else ""
        text = (f"⏹ {run.command} on {run.environment} was interrupted ({run.interrupted}){where} after "
                f"{seconds(duration)}")
    else:
        text = (f"❌ {run.command} on {run.environment} failed at {failed.name if failed else '?'} after "
                f"{seconds(duration)}: {failed.message if failed else 'see the log'}")
    return {"text": text, "environment": run.environment, "command": run.command, "run": run.id, "ok": ok,
            "duration": round(duration, 2),
            "stages_run": [o.name for o in outcomes if o.status == "ran"],
            "stages": [{"name": o.name, "status": o.status, "duration": round(o.duration, 2),
                        "handoff": o.handoff, "message": o.message} for o in outcomes],
            "failed_stage": failed.name if failed else None, "message": failed.message if failed else None,
            "interrupted": run.interrupted}


def drift_payload(run, report) -> dict:
    """The notification of a drift run: a text with the summary line of each stage not in sync, and the stages'
    statuses as fields (the items stay in drift.json: a notification is no place for a long list)."""
    stages = report.to_dict()["stages"]
    off = [f"• {s['name']}: {s['summary']}" for s in stages if s["status"] != "in sync"]
    text = "\n".join([f"⚠️ {report.headline()}", *off])
    return {"text": text, "event": "drift", "environment": report.environment, "command": run.command,
            "run": run.id, "status": report.status, "exit_code": report.exit_code,
            "drifted_stages": [s["name"] for s in stages if s["status"] == "drifted"],
            "stages": [{key: s[key] for key in ("name", "kind", "status", "summary", "reason", "counts")}
                       for s in stages]}


def post(url: str, body: dict, timeout: float, retries: int) -> str | None:
    """POST body as JSON; None on success, else the last problem (the URL never appears in it)."""
    import urllib.error
    import urllib.request

    data = mask(json.dumps(body)).encode()
    backoff = Backoff(retries + 1, max_seconds=timeout * (retries + 1) + 10, base=0.5, cap=4)
    while True:
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "proxpipe"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                if 200 <= answer.status < 300:
                    return None
                problem = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = "timed out" if "timed out" in str(reason) else f"{type(reason).__name__}: {reason}"
        delay = backoff.next_delay()
        if delay is None:
            return f"{problem} after {backoff.attempt} attempt{'s' if backoff.attempt != 1 else ''}"
        time.sleep(delay)


@hookimpl
def run_finished(run, ok, outcomes):
    options = run.plugin_options(NAME)
    if ok and not options.get("notify_noop") and not any(o.status == "ran" for o in outcomes):
        return
    _notify(options, "finished" if ok else "failed", lambda: payload(run, ok, outcomes))


@hookimpl
def drift_detected(run, report):
    _notify(run.plugin_options(NAME), "drift", lambda: drift_payload(run, report))


def _notify(options: dict, event: str, body) -> None:
    url = options.get("url")
    if url is None or not url.is_set or event not in options["on"]:
        return
    problem = post(url.reveal(), body(), options["timeout"], options["retries"])
    if problem:
        console.warn(f"webhook notification not delivered: {problem}; the run itself is unaffected")
