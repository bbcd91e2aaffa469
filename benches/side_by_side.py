#!/usr/bin/env python3
"""Side-by-side benchmark: `zkalert test` vs `promtool test rules`.

Usage:
    benches/side_by_side.py [--sizes 50x500x60,100x1000x120] [--zkalert PATH]
                            [--out DIR] [--repeat N] [--timeout SECONDS]

Each size is RULESxSERIESxSTEPS. For every size the script generates one
workload, writes it twice -- `prom/` (Prometheus rule file + promtool test
file) and `zk/` (zkalert rule file + zkalert test file) -- runs both tools on
it, checks that both pass, and prints a Markdown table of the timings.

Workload (deterministic: the PRNG is seeded from the size):
  * Series k (0 <= k < SERIES) is `bench_metric_<k % 10>{instance="i<k>",
    job="bench"}`: the series are dealt round-robin over ten metric names, so
    each metric has about SERIES/10 series and every instance label is unique.
  * Each series holds STEPS samples, one per minute from 0m to (STEPS-1)m. It
    is 10 most of the time, with up to STEPS//20 "spikes": a stretch of 1 to 8
    samples at one value drawn from 20..100 (later spikes overwrite earlier
    ones). Short spikes only ever reach pending; longer ones fire.
  * Rule r (0 <= r < RULES) is `BenchRule<r>: bench_metric_<r % 10> > T_r`
    with `for: 2m`, where T_r = 15 + 80*r/RULES (rounded to 2 decimals), so
    every rule has its own threshold between 15 and 95 and sees all series of
    one metric. Both rule files give it the label severity="P2" (Prometheus
    via `labels:`, zkalert via its `severity:` field) and the annotation
    summary "bench_metric_<m> above T_r on {{ $labels.instance }}". The
    zkalert rule also gets a URL `runbook:` so loading emits no warnings.
  * One test group with every series and, at 5 checkpoints spread over the
    run (the last one at the final step), one `alert_rule_test` per rule --
    `exp_alerts: []` included -- so every rule is asserted 5 times. The test
    file is byte-for-byte the same for both tools.
  * Expected alerts are computed here with Prometheus semantics: evaluations
    every minute from 0m; an alert goes pending at the first evaluation where
    the condition holds, fires once it has held for `for` (i.e. at t when the
    condition held at t-2m, t-1m and t), and resets when it is false.

The "rule x series x steps" column is the nominal product RULES*SERIES*STEPS
(each rule actually matches SERIES/10 series). Times are wall clock
(time.perf_counter) of the whole tool process, best of --repeat runs; CPU is
user+sys of that same run from getrusage(RUSAGE_CHILDREN).

Needs promtool (`apt-get install -y prometheus`). Without --zkalert the
release binary target/release/zkalert is used, built with
`cargo build --release` if it is missing. Python 3 standard library only.

Exit status: 0 all passed, 1 a tool failed or timed out, 2 setup problem.
"""

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = "50x500x60,100x1000x120"

METRICS = 10  # series are dealt round-robin over bench_metric_0..9
BASE_VALUE = 10
SPIKE_VALUES = (20, 100)  # inclusive range of a spike's value
SPIKE_LENGTHS = (1, 8)  # inclusive range of a spike's length, in samples
FOR_STEPS = 2  # `for: 2m` at a 1m evaluation interval
CHECKPOINTS = 5
SEVERITY = "P2"
RUNBOOK = "https://runbooks.example/bench"


@dataclass(frozen=True)
class Size:
    rules: int
    series: int
    steps: int

    def __str__(self):
        return f"{self.rules}x{self.series}x{self.steps}"

    @property
    def product(self):
        return self.rules * self.series * self.steps


@dataclass
class Workload:
    size: Size
    values: list  # values[k][t]: series k at minute t
    thresholds: list  # thresholds[r]: rule r's threshold, as written in the rules
    checkpoints: list  # eval times, in minutes
    expected: dict  # (rule, minute) -> sorted list of firing series indexes
    pending: int  # (rule, series, checkpoint) triples pending but not yet firing


@dataclass
class Timing:
    wall: float
    cpu: float


def parse_sizes(text):
    sizes = []
    for part in text.split(","):
        try:
            rules, series, steps = (int(n) for n in part.strip().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size {part!r}: expected RULESxSERIESxSTEPS, e.g. 50x500x60")
        if rules < 1 or series < 1 or steps < FOR_STEPS + 1:
            raise argparse.ArgumentTypeError(f"size {part!r}: need rules >= 1, series >= 1, steps >= {FOR_STEPS + 1}")
        sizes.append(Size(rules, series, steps))
    return sizes


def metric_of_series(k):
    return f"bench_metric_{k % METRICS}"


def metric_of_rule(r):
    return f"bench_metric_{r % METRICS}"


def threshold(r, rules):
    """Rule r's threshold as written in both rule files, e.g. "16.6"."""
    return f"{15 + 80 * r / rules:.2f}".rstrip("0").rstrip(".")


def generate(size):
    """Builds the data and the alerts Prometheus semantics say are firing."""
    rng = random.Random(str(size))
    values = []
    for _ in range(size.series):
        row = [BASE_VALUE] * size.steps
        for _ in range(rng.randint(0, max(1, size.steps // 20))):
            start = rng.randrange(size.steps)
            length = rng.randint(*SPIKE_LENGTHS)
            value = rng.randint(*SPIKE_VALUES)
            for t in range(start, min(start + length, size.steps)):
                row[t] = value
        values.append(row)

    thresholds = [threshold(r, size.rules) for r in range(size.rules)]
    last = size.steps - 1
    checkpoints = sorted({last * (i + 1) // CHECKPOINTS for i in range(CHECKPOINTS)})

    expected = {}
    pending = 0
    for r, thr in enumerate(thresholds):
        limit = float(thr)
        matching = [k for k in range(size.series) if k % METRICS == r % METRICS]
        for t in checkpoints:
            expected[r, t] = [k for k in matching if firing(values[k], limit, t)]
            pending += sum(values[k][t] > limit for k in matching) - len(expected[r, t])
    return Workload(size, values, thresholds, checkpoints, expected, pending)


def firing(row, limit, t):
    """Prometheus `for` semantics with one evaluation per sample: the alert
    became active at the first evaluation of the current run of true
    conditions and fires once t - activeAt >= for."""
    active_at = t
    while active_at >= 0 and row[active_at] > limit:
        active_at -= 1
    active_at += 1  # first evaluation of the current run
    return t - active_at >= FOR_STEPS  # never true when the condition is false at t


def compress(row):
    """promtool's expanding notation: a run of n equal values is `vx(n-1)`."""
    parts = []
    i = 0
    while i < len(row):
        j = i
        while j + 1 < len(row) and row[j + 1] == row[i]:
            j += 1
        parts.append(str(row[i]) if j == i else f"{row[i]}x{j - i}")
        i = j + 1
    return " ".join(parts)


def q(text):
    """A YAML single-quoted scalar (a quote is escaped by doubling it)."""
    return "'" + text.replace("'", "''") + "'"


def summary(r, thr):
    return f"{metric_of_rule(r)} above {thr} on {{{{ $labels.instance }}}}"


def rule_file(w, flavour):
    lines = ["groups:", "  - name: bench", "    rules:"]
    for r, thr in enumerate(w.thresholds):
        lines += [
            f"      - alert: BenchRule{r}",
            f"        expr: {metric_of_rule(r)} > {thr}",
            f"        for: {FOR_STEPS}m",
        ]
        if flavour == "prom":
            lines += ["        labels:", f"          severity: {SEVERITY}"]
        else:
            lines += [f"        severity: {SEVERITY}"]
        lines += ["        annotations:", f"          summary: {q(summary(r, thr))}"]
        if flavour == "zk":
            lines += [f"        runbook: {RUNBOOK}"]
    return "\n".join(lines) + "\n"


def test_file(w):
    lines = [
        "rule_files:",
        "  - rules.yaml",
        "evaluation_interval: 1m",
        "tests:",
        f"  - name: {q(f'bench {w.size}')}",
        "    interval: 1m",
        "    input_series:",
    ]
    for k, row in enumerate(w.values):
        series = f'{metric_of_series(k)}{{instance="i{k}", job="bench"}}'
        lines += [f"      - series: {q(series)}", f"        values: {q(compress(row))}"]
    lines.append("    alert_rule_test:")
    for t in w.checkpoints:
        for r, thr in enumerate(w.thresholds):
            lines += [f"      - eval_time: {t}m", f"        alertname: BenchRule{r}"]
            firing_series = w.expected[r, t]
            if not firing_series:
                lines.append("        exp_alerts: []")
                continue
            lines.append("        exp_alerts:")
            for k in firing_series:
                text = summary(r, thr).replace("{{ $labels.instance }}", f"i{k}")
                lines += [
                    f"          - exp_labels: {{instance: i{k}, job: bench, severity: {SEVERITY}}}",
                    f"            exp_annotations: {{summary: {q(text)}}}",
                ]
    return "\n".join(lines) + "\n"


def write_workload(w, root):
    test = test_file(w)
    paths = {}
    for flavour in ("prom", "zk"):
        d = root / flavour
        d.mkdir(parents=True, exist_ok=True)
        (d / "rules.yaml").write_text(rule_file(w, flavour))
        (d / "test.yaml").write_text(test)
        paths[flavour] = d / "test.yaml"
    return paths


class ToolFailed(Exception):
    pass


def run_timed(name, argv, timeout):
    """Runs argv once; returns its Timing, raises ToolFailed unless it exits 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolFailed(f"{name} exceeded the {timeout:g} s timeout (killed): {' '.join(map(str, argv))}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        head = "\n".join(proc.stdout.splitlines()[:60])
        raise ToolFailed(f"{name} failed (exit {proc.returncode}): {' '.join(map(str, argv))}\n{head}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def best_of(name, argv, repeat, timeout):
    return min((run_timed(name, argv, timeout) for _ in range(repeat)), key=lambda t: t.wall)


def find_promtool():
    path = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
    if path is None:
        print("promtool not found: apt-get install -y prometheus", file=sys.stderr)
        sys.exit(2)
    return path


def find_zkalert(given, timeout):
    if given is not None:
        path = Path(given)
        if not os.access(path, os.X_OK):
            print(f"zkalert binary {path} not found or not executable", file=sys.stderr)
            sys.exit(2)
        return path
    path = REPO / "target" / "release" / "zkalert"
    if not os.access(path, os.X_OK):
        print(f"{path} missing: running cargo build --release", file=sys.stderr)
        try:
            subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True, timeout=timeout)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as e:
            print(f"cargo build --release failed: {e}", file=sys.stderr)
            sys.exit(2)
    return path


def machine(promtool):
    cpus = len(os.sched_getaffinity(0))
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = subprocess.run([promtool, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = (version.stdout.splitlines() or ["unknown"])[0]
    return cpus, model, first


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES),
                    help=f"comma-separated RULESxSERIESxSTEPS (default {DEFAULT_SIZES})")
    ap.add_argument("--zkalert", help="zkalert binary (default: target/release/zkalert, built if missing)")
    ap.add_argument("--out", type=Path, help="directory for the generated workloads (default: a new temp dir)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool and size; the best time is reported")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds allowed for each tool run (default 1200)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    promtool = find_promtool()
    zkalert = find_zkalert(args.zkalert, args.timeout)
    out = args.out or Path(tempfile.mkdtemp(prefix="zkalert-bench-"))

    cpus, model, version = machine(promtool)
    print(f"machine: {cpus} CPUs, {model}")
    print(f"promtool: {version}")
    print(f"zkalert: {zkalert}")
    print(f"workloads: {out}")
    print()

    rows = []
    for size in args.sizes:
        w = generate(size)
        paths = write_workload(w, out / str(size))
        asserted = sum(len(v) for v in w.expected.values())
        print(f"{size}: {len(w.expected)} alert_rule_tests at {', '.join(f'{t}m' for t in w.checkpoints)}, "
              f"{asserted} firing alerts asserted ({w.pending} more pending, asserted absent)", flush=True)
        try:
            prom = best_of("promtool", [promtool, "test", "rules", paths["prom"]], args.repeat, args.timeout)
            zk = best_of("zkalert", [zkalert, "test", paths["zk"]], args.repeat, args.timeout)
        except ToolFailed as e:
            print(e, file=sys.stderr)
            print(f"workload left in {out / str(size)}", file=sys.stderr)
            return 1
        rows.append((size, prom, zk))

    print()
    print("| size (rules×series×steps) | rule×series×steps | promtool s | zkalert s | promtool/zkalert "
          "| promtool CPU s | zkalert CPU s | zkalert s per M rule×series×steps |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for size, prom, zk in rows:
        print(f"| {size} | {size.product:,} | {prom.wall:.3f} | {zk.wall:.3f} | {prom.wall / zk.wall:.2f}× "
              f"| {prom.cpu:.3f} | {zk.cpu:.3f} | {zk.wall / size.product * 1e6:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
