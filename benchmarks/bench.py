"""proxpipe's benchmarks, run in the local lab. Each comparison is measured side by side in one run: the
variants alternate (their order rotates every repetition), and the table shows median, min and max.

    .venv/bin/python benchmarks/bench.py            # everything, prints the table, exits 1 on a missed target
    .venv/bin/python benchmarks/bench.py --only noop,memory --reps 9

Targets: a no-op deploy, through `doit deploy` and through `proxpipe deploy`, at most 1.5x `doit --version`, and
no tool started by either; stages 2 + 3 for one VM at most 1.15x the bare tools and at least 3x faster than the
seed's scripts; stages 2 + 3 for 30 VMs at most 4x one VM (the bare tools' own ratio is shown beside it), and
at most 1.10x the bare tools at 30 VMs; the pipeline's own peak memory at 30 VMs under 100 MB; the graph's branches
at once at most 0.65x one after another, and a 12-stage no-op at most 1.6x `doit --version` (benchmarks/graph.py).

The machine's load average is shown with every comparison: on a shared machine the ratios, measured side by side,
mean more than the times. Where the CPU of a 1- and a 30-VM run goes (the pipeline and its tools, the lab's VMs,
the lab's API) is shown too: the lab's VMs run on this machine's CPUs, which a real cluster's VMs do not.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
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

from benchmarks import graph  # noqa: E402
from tests.labproject import VENV_BIN, LabProject  # noqa: E402

DOIT = str(VENV_BIN / "doit")
PROXPIPE = str(VENV_BIN / "proxpipe")
SEED = REPO / "benchmarks" / "seed"
SCALE = (1, 10, 30)


# ----------------------------------------------------------------------------- measuring


def run(argv, cwd, env, check=True):
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and done.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(map(str, argv))}\n{done.stdout}\n{done.stderr}")
    return done


def load() -> float:
    return os.getloadavg()[0]


def side_by_side(variants: dict[str, Callable[[], None]], reps: int, prepare: Callable[[str], None] | None = None,
                 reps_of: dict[str, int] | None = None, loads: list[float] | None = None) -> dict[str, list[float]]:
    """Time each variant `reps` times, alternating, the order rotating every repetition; prepare(name), untimed,
    runs before each. The load average before each timed run goes to loads."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            if len(samples[name]) >= (reps_of or {}).get(name, reps):
                continue
            if prepare:
                prepare(name)
            if loads is not None:
                loads.append(load())
            started = time.perf_counter()
            variants[name]()
            samples[name].append(time.perf_counter() - started)
    return samples


def stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def median(values: list[float]) -> float:
    return statistics.median(values)


def row(name: str, values: list[float]) -> str:
    mid, low, high = stats(values)
    return f"  {name:<46} {mid:8.3f}s   [{low:.3f} .. {high:.3f}]  n={len(values)}"


def load_line(loads: list[float]) -> str:
    """The 1-minute load average before each run. It counts the benchmark's own processes too: at 30 VMs, Ansible
    alone runs 30 workers at once."""
    mid, low, high = stats(loads)
    return (f"  (load average before each run: median {mid:.1f}, {low:.1f} .. {high:.1f}, on {os.cpu_count()} CPUs; "
            "it counts the benchmark's own processes)")


class Report:
    def __init__(self):
        self.targets: list[tuple[str, str, bool]] = []
        self.results: dict[str, object] = {}

    def target(self, what: str, value: str, met: bool) -> None:
        self.targets.append((what, value, met))
        print(f"  target: {what:<50} {value:<22} {'met' if met else 'MISSED'}")


# ----------------------------------------------------------------------------- the tools, typed by hand


class Tools:
    """The tool commands the pipeline runs for stages 2 + 3, typed by hand, in the exact environment the pipeline
    gives terraform and ansible-playbook: no lint gate, no waiting for the hosts."""

    def __init__(self, project: LabProject):
        os.environ.pop("PROXPIPE_PLUGINS", None)
        from proxpipe.domain.toolrunner import tool_path_env
        from proxpipe.engine.pipeline import Pipeline

        pipeline = Pipeline.load(project.root / "pipeline.yaml", "lab")
        provision, configure = pipeline.stage("provision"), pipeline.stage("configure")
        hosts = len(project.env["stages"]["provision"]["vars"]["vms"])
        self.tf_env = tool_path_env({**project.environ(), **pipeline.proxmox_tool_env(), **provision.tool_env(),
                                     **provision.secret_env()})
        self.ansible_env = tool_path_env({**project.environ(), **configure.tool_env(hosts)})
        self.vars_file, self.tf_dir, self.parallelism = provision.vars_file, provision.dir, provision.parallelism_args()
        self.ansible_dir = project.root / "lab" / "ansible"
        self.inventory = project.state / "ansible_inventory.json"
        self.control_dir = configure.control_path_dir()
        self.terraform = shutil.which("terraform", path=self.tf_env["PATH"]) or str(REPO / ".tools/bin/terraform")
        self.playbook = shutil.which("ansible-playbook", path=self.ansible_env["PATH"])
        self.plan_file = project.root / "bare.tfplan"

    def tf(self, *args: str) -> None:
        run([self.terraform, *args], self.tf_dir, self.tf_env)

    def destroy(self) -> None:
        self.tf("destroy", "-input=false", "-no-color", "-auto-approve", f"-var-file={self.vars_file}")

    def play(self) -> None:
        self.tf("output", "-json", "ansible_inventory")
        run([self.playbook, "-i", str(self.inventory), "site.yml"], self.ansible_dir, self.ansible_env)

    def bare(self) -> None:
        """plan -out, apply it, output, playbook."""
        self.tf("plan", "-input=false", "-no-color", f"-out={self.plan_file}", *self.parallelism,
                f"-var-file={self.vars_file}")
        self.tf("apply", "-input=false", "-no-color", "-auto-approve", *self.parallelism, str(self.plan_file))
        self.play()

    def one_shot(self) -> None:
        """What a person would more likely type: `terraform apply -auto-approve`, planning and applying at once."""
        self.tf("apply", "-input=false", "-no-color", "-auto-approve", *self.parallelism,
                f"-var-file={self.vars_file}")
        self.play()

    def close_connections(self) -> None:
        """End the SSH connections Ansible keeps open (ControlPersist), so the lab VMs' sshd count their CPU."""
        for socket in glob.glob(str(self.control_dir / "*")):
            subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "lab"], capture_output=True,
                           timeout=30)


def ours(project: LabProject) -> None:
    run([DOIT, "provision", "--force", "configure", "--force"], project.root, project.environ())


# ----------------------------------------------------------------------------- the benchmarks


def bench_noop(project: LabProject, reps: int, report: Report) -> None:
    print("\nno-op deploy (everything up to date) against `doit --version` (Python and doit starting alone)")
    env = project.environ()
    project.ok("deploy")
    project.reset_calls()
    loads: list[float] = []
    commands = {"doit deploy (no-op)": DOIT, "proxpipe deploy (no-op)": PROXPIPE}
    samples = side_by_side({
        "doit --version": lambda: run([DOIT, "--version"], project.root, env),
        **{name: (lambda program=program: run([program, "deploy"], project.root, env))
           for name, program in commands.items()},
    }, reps, loads=loads)
    for name, values in samples.items():
        print(row(name, values))
    print(load_line(loads))
    base = median(samples["doit --version"])
    for name in commands:
        ratio = median(samples[name]) / base
        report.target(f"{name.split(' (')[0]} / doit --version <= 1.5", f"{ratio:.2f}x", ratio <= 1.5)
    calls = len(project.tool_calls())
    report.target("tool processes started by no-op deploys = 0", str(calls), calls == 0)
    report.results["noop"] = {"samples": samples, "loads": loads}


def bench_stages(project: LabProject, reps: int, seed_reps: int, report: Report) -> None:
    print("\nstages 2 + 3 for one VM, from a template id to a configured VM (the VM destroyed before each run)")
    project.ok("deploy")
    tools = Tools(project)
    template_id = project.handoff("template_id.txt").strip()
    seed_inventory = project.root / "seed_inventory.json"
    seed_env = {**tools.tf_env, **tools.ansible_env, "LAB_TERRAFORM_DIR": str(tools.tf_dir),
                "LAB_ANSIBLE_DIR": str(tools.ansible_dir), "LAB_VARS_FILE": str(tools.vars_file),
                "LAB_INVENTORY": str(seed_inventory)}

    def seed():
        run(["bash", str(SEED / "stage-2-terraform.sh"), template_id], tools.tf_dir, seed_env)
        run(["bash", str(SEED / "stage-3-ansible.sh"), str(seed_inventory)], tools.ansible_dir, seed_env)

    names = {"ours": "ours: doit provision --force configure --force",
             "bare": "bare: plan -out, apply it, output, playbook",
             "one-shot": "bare, one-shot: apply -auto-approve, ...",
             "seed": "seed: stage-2-terraform.sh + stage-3-ansible.sh"}
    loads: list[float] = []
    samples = side_by_side({
        names["ours"]: lambda: ours(project), names["bare"]: tools.bare, names["one-shot"]: tools.one_shot,
        names["seed"]: seed,
    }, reps, prepare=lambda _name: tools.destroy(), reps_of={names["seed"]: seed_reps}, loads=loads)
    for name, values in samples.items():
        print(row(name, values))
    print(load_line(loads))
    ours_time, bare_time, one_shot_time, seed_time = (median(samples[names[k]])
                                                      for k in ("ours", "bare", "one-shot", "seed"))
    print(f"  (ours / one-shot apply: {ours_time / one_shot_time:.2f}x; not a target, see docs/performance.md)")
    report.target("ours / bare <= 1.15", f"{ours_time / bare_time:.2f}x", ours_time / bare_time <= 1.15)
    report.target("seed / ours >= 3", f"{seed_time / ours_time:.2f}x", seed_time / ours_time >= 3)
    report.target("stages 2 + 3, one VM, under 60 s (the seed's goal)", f"{ours_time:.1f}s", ours_time < 60)
    report.results["stages"] = {"samples": samples, "loads": loads}
    project.ok("deploy")


def bench_graph(root: Path, reps: int, report: Report) -> None:
    print("\nthe graph's independent branches at once against one after another (deploy --jobs 1), from the templates "
          "to configured VMs (the VMs destroyed before each run)")
    for label, stages in (("two independent branches", graph.branches(2)), ("lab-graph", graph.shipped())):
        project = graph.lab_graph(root / label.replace(" ", "-"), stages)
        graph.roots(project, stages)
        try:
            project.ok("deploy")
            loads: list[float] = []
            samples = side_by_side({
                f"{label}: deploy (jobs 4)": lambda p=project: run([DOIT, "deploy"], p.root, p.environ()),
                f"{label}: deploy --jobs 1": lambda p=project: run([DOIT, "deploy", "--jobs", "1"], p.root,
                                                                   p.environ()),
            }, reps, prepare=lambda _name, p=project: p.ok("destroy"), loads=loads)
        finally:
            project.stop()
        for name, values in samples.items():
            print(row(name, values))
        print(load_line(loads))
        at_once, one_by_one = (median(values) for values in samples.values())
        ratio = at_once / one_by_one
        if label == "lab-graph":
            print(f"  (lab-graph at once / one after another: {ratio:.2f}x; its join runs alone: not a target)")
        else:
            report.target("graph branches at once / one by one <= 0.65", f"{ratio:.2f}x", ratio <= 0.65)
        report.results[f"graph {label}"] = {"samples": samples, "loads": loads}


def bench_graph_noop(root: Path, three: LabProject, reps: int, report: Report) -> None:
    print("\nno-op deploy of a 12-stage graph (four branches) against `doit --version` and the 3-stage no-op")
    stages = graph.branches(4)
    project = graph.lab_graph(root / "twelve", stages)
    graph.roots(project, stages)
    project.config["environments"]["lab-graph"]["limits"] = {"packer": 1}  # two builds share each Packer folder
    project.write_config()
    try:
        project.ok("deploy")
        three.ok("deploy")
        project.reset_calls()
        loads: list[float] = []
        samples = side_by_side({
            "doit --version": lambda: run([DOIT, "--version"], project.root, project.environ()),
            "doit deploy, 12 stages (no-op)": lambda: run([DOIT, "deploy"], project.root, project.environ()),
            "doit deploy, 3 stages (no-op)": lambda: run([DOIT, "deploy"], three.root, three.environ()),
        }, reps, loads=loads)
        calls = len(project.tool_calls())
    finally:
        project.stop()
    for name, values in samples.items():
        print(row(name, values))
    print(load_line(loads))
    base, twelve, three_stages = (median(values) for values in samples.values())
    report.target("12-stage no-op / doit --version <= 1.6", f"{twelve / base:.2f}x", twelve / base <= 1.6)
    per_stage = (twelve - three_stages) / 9 * 1000
    report.target("what a stage adds to a no-op <= 5 ms", f"{per_stage:.1f} ms", per_stage <= 5)
    report.target("tool processes started by the 12-stage no-op = 0", str(calls), calls == 0)
    report.results["graph noop"] = {"samples": samples, "loads": loads}


def bench_scaling(projects: dict[int, LabProject], tools: dict[int, Tools], reps: int, report: Report) -> None:
    counts = sorted(projects)
    most = counts[-1]
    print(f"\nscaling: stages 2 + 3 with {', '.join(map(str, counts))} lab VMs, from a template id to configured VMs "
          f"(the VMs destroyed before each run), and the bare tools at {counts[0]} and {most}")
    for project in projects.values():
        project.ok("deploy")
    label = {n: f"ours, {n} VM{'s' if n > 1 else ''}" for n in counts}
    # The bare tools at both ends: how they scale themselves is the floor ours is held to.
    bare = {n: f"bare, {n} VM{'s' if n > 1 else ''}: plan -out, apply it, output, playbook" for n in (counts[0], most)}
    variants = {label[n]: (lambda p=projects[n]: ours(p)) for n in counts}
    variants.update({bare[n]: tools[n].bare for n in bare})
    count_of = {**{label[n]: n for n in counts}, **{bare[n]: n for n in bare}}
    loads: list[float] = []
    samples = side_by_side(variants, reps, prepare=lambda name: tools[count_of[name]].destroy(), loads=loads)
    one = median(samples[label[counts[0]]])
    for name, values in samples.items():
        print(row(name, values) + f"   {median(values) / one:.2f}x one VM")
    print(load_line(loads))
    scale, overhead = median(samples[label[most]]) / one, median(samples[label[most]]) / median(samples[bare[most]])
    bare_scale = median(samples[bare[most]]) / median(samples[bare[counts[0]]])
    print(f"  (the bare tools themselves: {most} VMs / 1 VM = {bare_scale:.2f}x)")
    report.target(f"{most} VMs / 1 VM <= 4", f"{scale:.2f}x", scale <= 4)
    report.target(f"ours / bare at {most} VMs <= 1.10", f"{overhead:.2f}x", overhead <= 1.10)
    report.results["scaling"] = {"samples": samples, "loads": loads}
    for project in projects.values():
        project.ok("deploy")


def _cpu_seconds(pid: int, children: bool) -> float:
    """utime + stime of a process (children: plus those of its children that it has waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_cpu(projects: dict[int, LabProject], tools: dict[int, Tools], report: Report) -> None:
    """One more run of ours per size, not timed against a target: where its CPU went. The lab's VMs run on this
    machine's cores, which a real cluster's VMs do not."""
    print("\nCPU of one more run of stages 2 + 3: who spent it (the lab's VMs share this machine's CPUs)")
    found = {}
    for count, project in sorted(projects.items()):
        tools[count].destroy()
        server = int((project.state / "fake-pve" / "server.pid").read_text())
        api_before, tools_before, started = _cpu_seconds(server, False), _own_cpu(), time.perf_counter()
        ours(project)
        wall, pipeline = time.perf_counter() - started, _own_cpu() - tools_before
        tools[count].close_connections()
        time.sleep(0.5)  # the VMs' sshd collect their sessions
        vms = sum(_cpu_seconds(int(pid.read_text()), True) for pid in (project.state / "vms").glob("*/sshd.pid"))
        api = _cpu_seconds(server, False) - api_before
        total = pipeline + vms + api
        found[count] = {"wall": wall, "pipeline_and_tools": pipeline, "lab_vms": vms, "lab_api": api}
        print(f"  {count:>2} VM{'s' if count > 1 else ' '}: wall {wall:5.1f}s; CPU {total:5.1f}s = pipeline and tools "
              f"{pipeline:5.1f}s + lab VMs (sshd and the modules Ansible runs there) {vms:5.1f}s + lab API {api:4.1f}s")
    first, last = min(found), max(found)
    if first != last:
        share = {key: found[last][key] / max(found[first][key], 0.01) for key in ("pipeline_and_tools", "lab_vms")}
        print(f"  {last} VMs / {first}: pipeline and tools {share['pipeline_and_tools']:.1f}x, "
              f"lab VMs {share['lab_vms']:.1f}x")
    report.results["cpu"] = found


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


def bench_memory(projects: dict[int, LabProject], report: Report) -> None:
    print("\nmemory: peak resident set of the pipeline's own process (tools are separate processes, excluded)")
    peaks = {}
    for count, project in sorted(projects.items()):
        project.ok("destroy")
        for label, args in (("deploy (provision and configure run)", ["deploy"]), ("no-op deploy", ["deploy"]),
                            ("validate", ["validate"])):
            done = run([str(VENV_BIN / "python"), "-c", MEASURE, *args], project.root, project.environ())
            name = f"{label}, {count} VM{'s' if count > 1 else ''}"
            peaks[name] = int(done.stderr.split("PEAK_KB ")[1].split()[0]) / 1024
            print(f"  {name:<50} {peaks[name]:8.1f} MB")
    worst = max(peaks.values())
    report.target(f"peak memory of the pipeline, up to {max(projects)} VMs < 100 MB", f"{worst:.1f} MB", worst < 100)
    report.results["memory"] = peaks


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="noop,stages,graph,graph-noop,scaling,cpu,memory")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of each variant (default 7)")
    parser.add_argument("--seed-reps", type=int, default=2, help="repetitions of the seed's 30 s scripts")
    parser.add_argument("--scaling-reps", type=int, default=5,
                        help="repetitions of the scaling runs (default 5: one 30-VM run spreads over 3 s here)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    only = set(args.only.split(","))
    # An installed copy runs from compiled bytecode (pip compiles it); a checkout writes it on first use, unless the
    # environment forbids that, which would make every process compile proxpipe anew.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    report = Report()
    print(f"proxpipe benchmarks on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average "
          f"{' '.join(f'{value:.1f}' for value in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="proxpipe-bench-") as scratch:
        made: dict[int, LabProject] = {}

        def project(count: int) -> LabProject:
            # The lab's VMs boot the moment their sshd is up: what is measured is the pipeline's own overhead (its
            # SSH wait and readiness command still run), not a simulated boot the bare tools ignore. The up-to-date
            # checks' cache is the default a user has (the tests turn it off).
            if count not in made:
                lab = {"lab": {"boot_seconds": 0}, "proxmox": {"check_cache": 10}}
                made[count] = LabProject(Path(scratch) / f"vms{count}", vms=count, extra={"environments": {"lab": lab}})
            return made[count]

        try:
            if "noop" in only:
                bench_noop(project(1), max(args.reps, 7), report)
            if "stages" in only:
                bench_stages(project(1), args.reps, args.seed_reps, report)
            if "graph" in only:
                bench_graph(Path(scratch), args.reps, report)
            if "graph-noop" in only:
                bench_graph_noop(Path(scratch), project(1), max(args.reps, 7), report)
            sizes = {n: project(n) for n in SCALE} if only & {"scaling", "cpu"} else {}
            tools = {n: Tools(p) for n, p in sizes.items()}
            if "scaling" in only:
                bench_scaling(sizes, tools, args.scaling_reps, report)
            if "cpu" in only:
                bench_cpu({n: sizes[n] for n in (SCALE[0], SCALE[-1])}, tools, report)
            if "memory" in only:
                bench_memory({n: project(n) for n in (SCALE[0], SCALE[-1])}, report)
        finally:
            for each in made.values():
                each.stop()
    missed = [t for t in report.targets if not t[2]]
    print(f"\n{len(report.targets) - len(missed)} of {len(report.targets)} targets met "
          f"(load average at the end: {' '.join(f'{value:.1f}' for value in os.getloadavg())})")
    if args.json:
        Path(args.json).write_text(json.dumps({"targets": [{"target": t, "value": v, "met": m}
                                                           for t, v, m in report.targets],
                                               "results": report.results}, indent=2))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
