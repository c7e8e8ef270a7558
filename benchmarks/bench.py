"""proxpipe's benchmarks, run in the local lab. Each comparison is measured side by side in one run: the
variants alternate (their order rotates every repetition), and the table shows median, min and max.

    .venv/bin/python benchmarks/bench.py            # everything, prints the table, exits 1 on a missed target
    .venv/bin/python benchmarks/bench.py --only noop,memory --reps 9

Targets: a no-op deploy at most 2x `doit --version` and starting no tool; stages 2 + 3 for one VM at most
1.15x the bare tools and at least 3x faster than the seed's scripts; 10 VMs at most 3x one VM; the
pipeline's own peak memory under 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.labproject import VENV_BIN, LabProject  # noqa: E402

DOIT = str(VENV_BIN / "doit")
SEED = REPO / "benchmarks" / "seed"


# ----------------------------------------------------------------------------- measuring


def run(argv, cwd, env, check=True):
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and done.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(map(str, argv))}\n{done.stdout}\n{done.stderr}")
    return done


def side_by_side(variants: dict[str, Callable[[], None]], reps: int, prepare: Callable[[str], None] | None = None,
                 reps_of: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Time each variant `reps` times, alternating, the order rotating every repetition; prepare(name), untimed,
    runs before each."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            if len(samples[name]) >= (reps_of or {}).get(name, reps):
                continue
            if prepare:
                prepare(name)
            started = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - started)
    return samples


def stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def row(name: str, values: list[float]) -> str:
    median, low, high = stats(values)
    return f"  {name:<44} {median:8.3f}s   [{low:.3f} .. {high:.3f}]  n={len(values)}"


class Report:
    def __init__(self):
        self.targets: list[tuple[str, str, bool]] = []

    def target(self, what: str, value: str, met: bool) -> None:
        self.targets.append((what, value, met))
        print(f"  target: {what:<46} {value:<22} {'met' if met else 'MISSED'}")


# ----------------------------------------------------------------------------- the benchmarks


def bench_noop(project: LabProject, reps: int, report: Report) -> None:
    print("\nno-op deploy (everything up to date) against `doit --version` (Python and doit starting alone)")
    env = project.environ()
    project.ok("deploy")
    project.reset_calls()
    samples = side_by_side({
        "doit --version": lambda: run([DOIT, "--version"], project.root, env),
        "doit deploy (no-op)": lambda: run([DOIT, "deploy"], project.root, env),
    }, reps)
    for name, values in samples.items():
        print(row(name, values))
    ratio = stats(samples["doit deploy (no-op)"])[0] / stats(samples["doit --version"])[0]
    report.target("no-op deploy / doit --version <= 2", f"{ratio:.2f}x", ratio <= 2)
    calls = len(project.tool_calls())
    report.target("tool processes started by no-op deploys = 0", str(calls), calls == 0)


def _tool_envs(project: LabProject) -> tuple[dict, dict, Path, Path]:
    """The exact environment the pipeline gives terraform and ansible-playbook, for the bare tools."""
    os.environ.pop("PROXPIPE_PLUGINS", None)
    from proxpipe.domain.tools import tool_path_env
    from proxpipe.engine.pipeline import Pipeline

    pipeline = Pipeline.load(project.root / "pipeline.yaml", "lab")
    provision, configure = pipeline.stage("provision"), pipeline.stage("configure")
    tf_env = tool_path_env({**project.environ(), **pipeline.proxmox_tool_env(), **provision.tool_env(),
                            **provision.secret_env()})
    ansible_env = tool_path_env({**project.environ(), **configure.tool_env(1)})
    return tf_env, ansible_env, provision.vars_file, provision.dir


def bench_stages(project: LabProject, reps: int, seed_reps: int, report: Report) -> None:
    print("\nstages 2 + 3 for one VM, from a template id to a configured VM (the VM destroyed before each run)")
    project.ok("deploy")
    tf_env, ansible_env, vars_file, tf_dir = _tool_envs(project)
    ansible_dir = project.root / "lab" / "ansible"
    inventory = project.state / "ansible_inventory.json"
    template_id = project.handoff("template_id.txt").strip()
    seed_inventory = project.root / "seed_inventory.json"
    seed_env = {**tf_env, **ansible_env, "LAB_TERRAFORM_DIR": str(tf_dir), "LAB_ANSIBLE_DIR": str(ansible_dir),
                "LAB_VARS_FILE": str(vars_file), "LAB_INVENTORY": str(seed_inventory)}

    terraform = shutil.which("terraform", path=tf_env["PATH"]) or str(REPO / ".tools" / "bin" / "terraform")
    playbook = shutil.which("ansible-playbook", path=ansible_env["PATH"])
    plan_file = project.root / "bare.tfplan"

    def destroy(_variant):
        run([terraform, "destroy", "-input=false", "-no-color", "-auto-approve", f"-var-file={vars_file}"],
            tf_dir, tf_env)

    def bare():
        """The tool commands the pipeline runs for these stages, typed by hand: no lint gate, no waiting."""
        run([terraform, "plan", "-input=false", "-no-color", f"-out={plan_file}", f"-var-file={vars_file}"],
            tf_dir, tf_env)
        run([terraform, "apply", "-input=false", "-no-color", "-auto-approve", str(plan_file)], tf_dir, tf_env)
        run([terraform, "output", "-json", "ansible_inventory"], tf_dir, tf_env)
        run([playbook, "-i", str(inventory), "site.yml"], ansible_dir, ansible_env)

    def one_shot():
        """What a person would more likely type: `terraform apply -auto-approve`, planning and applying at once."""
        run([terraform, "apply", "-input=false", "-no-color", "-auto-approve", f"-var-file={vars_file}"],
            tf_dir, tf_env)
        run([terraform, "output", "-json", "ansible_inventory"], tf_dir, tf_env)
        run([playbook, "-i", str(inventory), "site.yml"], ansible_dir, ansible_env)

    def seed():
        run(["bash", str(SEED / "stage-2-terraform.sh"), template_id], tf_dir, seed_env)
        run(["bash", str(SEED / "stage-3-ansible.sh"), str(seed_inventory)], ansible_dir, seed_env)

    names = {"ours": "ours: doit -a provision configure",
             "bare": "bare: plan -out, apply it, output, playbook",
             "one-shot": "bare, one-shot: apply -auto-approve, ...",
             "seed": "seed: stage-2-terraform.sh + stage-3-ansible.sh"}
    samples = side_by_side({
        names["ours"]: lambda: run([DOIT, "-a", "provision", "configure"], project.root, project.environ()),
        names["bare"]: bare, names["one-shot"]: one_shot, names["seed"]: seed,
    }, reps, prepare=destroy, reps_of={names["seed"]: seed_reps})
    for name, values in samples.items():
        print(row(name, values))
    ours, bare_time, one_shot_time, seed_time = (stats(samples[names[k]])[0]
                                                 for k in ("ours", "bare", "one-shot", "seed"))
    print(f"  (ours / one-shot apply: {ours / one_shot_time:.2f}x; not a target, see docs/performance.md)")
    report.target("ours / bare <= 1.15", f"{ours / bare_time:.2f}x", ours / bare_time <= 1.15)
    report.target("seed / ours >= 3", f"{seed_time / ours:.2f}x", seed_time / ours >= 3)
    report.target("stages 2 + 3, one VM, under 60 s (the seed's goal)", f"{ours:.1f}s", ours < 60)
    project.ok("deploy")


def bench_scaling(projects: dict[int, LabProject], reps: int, report: Report) -> None:
    print("\nscaling: stages 2 + 3 with 1, 5 and 10 lab VMs, from a template id to configured VMs")
    for project in projects.values():
        project.ok("deploy")

    by_name = {f"{n} VM{'s' if n > 1 else ''}": p for n, p in projects.items()}
    samples = side_by_side({name: (lambda p=p: p.ok("provision", "configure")) for name, p in by_name.items()},
                           reps, prepare=lambda name: by_name[name].ok("destroy"))
    names = list(by_name)
    one = stats(samples[names[0]])[0]
    for name in names:
        print(row(name, samples[name]) + f"   {stats(samples[name])[0] / one:.2f}x one VM")
    ten = stats(samples[names[-1]])[0] / one
    report.target("10 VMs / 1 VM <= 3", f"{ten:.2f}x", ten <= 3)


MEASURE = """
import sys
from doit.doit_cmd import DoitMain
sys.argv = ["doit", *sys.argv[1:]]
code = DoitMain().run(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(f"PEAK_KB {peak}", file=sys.stderr)
sys.exit(code)
"""


def bench_memory(project: LabProject, report: Report) -> None:
    print("\nmemory: peak resident set of the pipeline's own process (tools are separate processes, excluded)")
    peaks = {}
    project.ok("destroy")
    for label, args in (("deploy (provision and configure run)", ["deploy"]), ("no-op deploy", ["deploy"]),
                        ("validate", ["validate"])):
        done = run([str(VENV_BIN / "python"), "-c", MEASURE, *args], project.root, project.environ())
        peaks[label] = int(done.stderr.split("PEAK_KB ")[1].split()[0]) / 1024
        print(f"  {label:<44} {peaks[label]:8.1f} MB")
    worst = max(peaks.values())
    report.target("peak memory of the pipeline < 100 MB", f"{worst:.1f} MB", worst < 100)


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="noop,stages,scaling,memory")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of each variant (default 7)")
    parser.add_argument("--seed-reps", type=int, default=2, help="repetitions of the seed's 30 s scripts")
    parser.add_argument("--scaling-reps", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    only = set(args.only.split(","))
    report = Report()
    print(f"proxpipe benchmarks on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="proxpipe-bench-") as scratch:
        root = Path(scratch)
        made = []
        try:
            # The lab's VMs boot the moment their sshd is up: what is measured is the pipeline's own overhead
            # (its SSH wait and readiness command still run), not a simulated boot the bare tools ignore.
            instant = {"environments": {"lab": {"lab": {"boot_seconds": 0}}}}
            if only & {"noop", "stages", "memory"}:
                project = LabProject(root / "one", extra=instant)
                made.append(project)
                if "noop" in only:
                    bench_noop(project, max(args.reps, 7), report)
                if "stages" in only:
                    bench_stages(project, args.reps, args.seed_reps, report)
                if "memory" in only:
                    bench_memory(project, report)
            if "scaling" in only:
                projects = {n: LabProject(root / f"vms{n}", vms=n, extra=instant) for n in (1, 5, 10)}
                made += projects.values()
                bench_scaling(projects, args.scaling_reps, report)
        finally:
            for project in made:
                project.stop()
    missed = [t for t in report.targets if not t[2]]
    print(f"\n{len(report.targets) - len(missed)} of {len(report.targets)} targets met")
    if args.json:
        Path(args.json).write_text(json.dumps([{"target": t, "value": v, "met": m} for t, v, m in report.targets],
                                              indent=2))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
