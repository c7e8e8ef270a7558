"""`doit validate`: every check contributed through the register_checks hook, run in parallel threads.

Reports: a table on the console, <state>/validate.json and JUnit XML in <state>/validate.xml. Validation changes
nothing and takes no lock, so it may run while a deploy holds the environment.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from proxpipe.api.checks import FAILED, PASSED, SKIPPED, Check, CheckContext, Result, Skip, planned
from proxpipe.api.command import JSON, Command, Param
from proxpipe.base import secrets
from proxpipe.base.console import console, table
from proxpipe.base.errors import CheckFailed, PipelineError
from proxpipe.base.fsutil import atomic_write, display

if TYPE_CHECKING:
    from proxpipe.api.stage import Stage
    from proxpipe.engine.pipeline import Pipeline


def select(pipeline: Pipeline, wanted: list[str]) -> list[tuple[Check, Stage | None]]:
    """The checks to run (all, or those asked for, less validate.skip), each with each stage it checks."""
    checks = pipeline.plugins.checks()
    known = {c.id for c in checks}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise PipelineError(f"--check {unknown[0]}: no such check (checks: {', '.join(sorted(known))})")
    skipped = set(pipeline.env.validate.skip) - set(wanted)
    return planned(pipeline.stages, [c for c in checks if (not wanted or c.id in wanted) and c.id not in skipped])


def run_checks(pipeline: Pipeline, pairs: list[tuple[Check, Stage | None]], log_dir: Path) -> list[Result]:
    from concurrent.futures import ThreadPoolExecutor

    from proxpipe.engine.execute import stage_job

    def context(stage: Stage | None) -> CheckContext:
        return CheckContext(pipeline, stage, log_dir,
                            lambda check_id, of: stage_job(pipeline, of, check_id, log_dir=log_dir))

    try:
        _ = pipeline.proxmox  # connect (and start the lab) once, before the threads
    except PipelineError as exc:
        console.warn(f"Proxmox API: {exc}")
    several = {check.id for check, _ in pairs if sum(c is check for c, _ in pairs) > 1}
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(pairs)))) as pool:
        batches = list(pool.map(lambda pair: _run_one(context(pair[1]), pair[0], pair[0].id in several), pairs))
    return [result for batch in batches for result in batch]


def _run_one(ctx: CheckContext, check: Check, named: bool = False) -> list[Result]:
    """The check's results for the stage ctx checks; named: the stage's name goes before each target."""
    started = time.monotonic()
    try:
        results = list(check.run(ctx))
        if not results:
            raise Skip("nothing to check")
    except Skip as exc:
        results = [Result(check.id, "-", SKIPPED, str(exc))]
    except (PipelineError, CheckFailed) as exc:
        results = [Result(check.id, "-", FAILED, str(exc))]
    except Exception as exc:  # noqa: BLE001 - a check's own bug is that check's failure, reported by name
        results = [Result(check.id, "-", FAILED, f"the check raised {type(exc).__name__}: {exc}")]
    duration = time.monotonic() - started
    stage = ctx.checked.name if ctx.checked is not None else check.stage
    for result in results:
        result.check, result.stage = check.id, stage
        result.target = f"{stage}: {result.target}" if named else result.target
        result.duration = result.duration or duration / len(results)
        result.message = secrets.mask(result.message)
    return results


# ----------------------------------------------------------------------------- reports


def report(pipeline: Pipeline, results: list[Result], started: float) -> dict:
    counts = {status: sum(r.status == status for r in results) for status in (PASSED, FAILED, SKIPPED)}
    data = {"environment": pipeline.env.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                                                       time.localtime(started)),
            "duration": round(time.time() - started, 2), "ok": counts[FAILED] == 0, "counts": counts,
            "results": [asdict(r) | {"duration": round(r.duration, 3)} for r in results]}
    atomic_write(pipeline.state_dir / "validate.json", secrets.mask(json.dumps(data, indent=2) + "\n"))
    atomic_write(pipeline.state_dir / "validate.xml", secrets.mask(junit(pipeline.env.name, results,
                                                                         data["duration"])))
    return data


def junit(environment: str, results: list[Result], duration: float) -> str:
    from xml.etree import ElementTree

    suite = ElementTree.Element("testsuite", name=f"proxpipe validate {environment}", tests=str(len(results)),
                                failures=str(sum(r.status == FAILED for r in results)), errors="0",
                                skipped=str(sum(r.status == SKIPPED for r in results)), time=f"{duration:.3f}")
    for result in results:
        case = ElementTree.SubElement(suite, "testcase", classname=f"{result.stage}.{result.check}",
                                      name=result.target, time=f"{result.duration:.3f}")
        if result.status == FAILED:
            ElementTree.SubElement(case, "failure", message=result.message).text = result.message
        elif result.status == SKIPPED:
            ElementTree.SubElement(case, "skipped", message=result.message)
    suites = ElementTree.Element("testsuites")
    suites.append(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(suites, encoding="unicode") + "\n"


def show(results: list[Result]) -> None:
    marks = {PASSED: "ok", FAILED: "FAIL", SKIPPED: "skip"}
    rows = [[r.check, r.target, marks[r.status], f"{r.duration:.2f}s", r.message] for r in results]
    console.out(table(rows, ["check", "target", "result", "time", "message"]))


def listing(pairs: list[tuple[Check, Stage | None]]) -> list[list[str]]:
    """[check, the stages it checks, what it checks] per check, in the order they run."""
    rows: dict[str, list[str]] = {}
    for check, stage in pairs:
        row = rows.setdefault(check.id, [check.id, "", check.description])
        row[1] = ", ".join(filter(None, [row[1], stage.name if stage else check.stage]))
    return list(rows.values())


# ----------------------------------------------------------------------------- the doit action


def validate(pipeline: Pipeline, check: list[str] = (), list_checks: bool = False, json: bool = False) -> None:
    """Run the checks (or list them); CheckFailed when any failed, so doit exits non-zero. json: the list, or the
    report (what validate.json holds), as one document (schemas/validate.schema.json)."""
    pairs = select(pipeline, list(check or []))
    if list_checks:
        rows = listing(pairs)
        if json:
            console.json({"format_version": 1, "environment": pipeline.env.name, "checks": [
                {"id": row[0], "stages": row[1].split(", ") if row[1] else [], "description": row[2]}
                for row in rows]})
            return
        console.out(table(rows, ["check", "stage", "what it checks"]))
        return
    started = time.time()
    pipeline.state_dir.mkdir(parents=True, exist_ok=True)
    log_dir = pipeline.state_dir / "logs" / time.strftime("validate-%Y%m%d-%H%M%S")
    results = run_checks(pipeline, pairs, log_dir)
    if not json:
        show(results)
    data = report(pipeline, results, started)
    if json:
        console.json({"format_version": 1, **data})
    counts = data["counts"]
    summary = (f"{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[SKIPPED]} skipped in "
               f"{data['duration']:.1f}s; reports: {display(pipeline.state_dir / 'validate.json')}, "
               f"{display(pipeline.state_dir / 'validate.xml')}")
    if counts[FAILED]:
        raise CheckFailed(f"validation failed: {summary}")
    console.out(f"validation passed: {summary}")


COMMANDS = (
    Command("validate", "run every check (template, lint, state, VMs, SSH, ping, drift), changing nothing",
            validate,
            (Param("check", "check", list, [], "run only this check", metavar="ID"),
             Param("list_checks", "list", bool, False, "list the checks and exit"), JSON),
            group="look", description="Runs every check the plugins contribute, per stage, in parallel; exit 0 only "
                                      "when all pass. Writes validate.json and validate.xml (JUnit) into the state "
                                      "directory. Changes nothing else and takes no lock.",
            example="doit validate --check ssh"),
)
