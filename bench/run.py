"""Run every benchmark on every event loop, interleaved, and print one comparison table.

    python bench/run.py [--loops asyncio,uvloop,rloop,goloop] [--rounds 7] [--quick]
                        [--bench NAMES] [--markdown FILE] [--json FILE]

Each sample is a fresh ``python bench/workloads.py LOOP BENCH N`` process. Samples are taken
round by round, and within a round the loop order is rotated, so slow drift on the machine
(thermal throttling, a neighbour's build, frequency scaling) lands on every loop alike instead
of on whichever loop happened to run last. Each cell is the median over rounds; the ratios are
what to quote, because absolute ops/s move from machine to machine and from hour to hour.
"""

import argparse
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time

from tables import render_markdown, render_text
from workloads import BENCHMARKS, LOOPS

WORKLOADS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workloads.py")

# A sample that takes longer than this is a hang (e.g. a lost wake-up), not a slow loop:
# record it as a failure and move on rather than stall the whole run.
SAMPLE_TIMEOUT = 120

# --quick is a smoke run: fewer rounds and smaller n, same code paths.
QUICK_ROUNDS = 3
QUICK_DIVISOR = 5

# Debug switches slow loops by different amounts (asyncio's debug mode wraps every callback),
# so they must not leak from the caller's shell into the samples.
_SCRUBBED_ENV = ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC")


# --- running samples -------------------------------------------------------------------------

def _child_env():
    env = dict(os.environ)
    for name in _SCRUBBED_ENV:
        env.pop(name, None)
    return env


def run_child(*args):
    """Run workloads.py with args; return its JSON result, or {"error": ...} on any failure."""
    cmd = [sys.executable, WORKLOADS, *map(str, args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(),
                              timeout=SAMPLE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {SAMPLE_TIMEOUT}s"}
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        # No JSON at all: the child crashed hard (segfault in an extension, abort in cgo).
        return {"error": "crashed: " + _crash_reason(proc)}
    if proc.returncode != 0 and "error" not in result:
        result["error"] = f"exit status {proc.returncode}"
    return result


def _crash_reason(proc):
    if proc.returncode < 0:
        reason = f"killed by {signal.Signals(-proc.returncode).name}"
    else:
        reason = f"exit status {proc.returncode}"
    # The last stderr line is usually the one that names the problem (Go panic, Fatal error).
    tail = proc.stderr.strip().splitlines()[-1:]
    return f"{reason}: {tail[0]}" if tail else reason


def probe_loops(names):
    """Split names into {name: version} that import and run, and {name: reason} that do not."""
    available, skipped = {}, {}
    for name in names:
        result = run_child(name, "probe")
        if "error" in result:
            skipped[name] = result["error"]
        else:
            available[name] = result["version"]
    return available, skipped


def schedule(rounds, loops, benches):
    """Yield (round, loop, bench) in run order: rounds outermost, loop order rotated by one
    each round, so every loop takes every position in the sequence equally often."""
    for r in range(rounds):
        k = r % len(loops)
        for loop in loops[k:] + loops[:k]:
            for bench in benches:
                yield r, loop, bench


def collect(rounds, loops, benches, divisor):
    """Run every sample; return the list of result dicts, each tagged with its round."""
    results = []
    total = rounds * len(loops) * len(benches)
    for i, (r, loop, bench) in enumerate(schedule(rounds, loops, benches), 1):
        n = max(BENCHMARKS[bench].n // divisor, 1)
        result = run_child(loop, bench, n)
        result.update(round=r, loop=loop, bench=bench, n=n)
        results.append(result)
        shown = result.get("error") or f"{fmt_ops(result['ops_per_sec'])} ops/s"
        print(f"[{i:3}/{total}] round {r + 1}/{rounds}  {loop:8} {bench:16} {shown}",
              file=sys.stderr, flush=True)
    return results


# --- summarising -----------------------------------------------------------------------------

def summarize(results, loops, benches):
    """Per (bench, loop): median ops/s, relative spread, and failures."""
    cells = {}
    for bench in benches:
        for loop in loops:
            mine = [r for r in results if r["bench"] == bench and r["loop"] == loop]
            ops = [r["ops_per_sec"] for r in mine if "error" not in r]
            errors = [r["error"] for r in mine if "error" in r]
            cell = {"samples": ops, "errors": errors, "median": None, "spread": None}
            if ops:
                median = statistics.median(ops)
                cell["median"] = median
                # Half the min-max range relative to the median: read "1.2M ±3%" as "the
                # rounds spanned about 6% of 1.2M". Min-max rather than IQR because with 3-7
                # rounds the quartiles are barely defined.
                cell["spread"] = (max(ops) - min(ops)) / 2 / median
            cells[bench, loop] = cell
    return cells


def ratio_columns(loops):
    """Every loop against stock asyncio, plus goloop against uvloop, the loop it must beat."""
    pairs = [(loop, "asyncio") for loop in loops if loop != "asyncio" and "asyncio" in loops]
    if "goloop" in loops and "uvloop" in loops:
        pairs.append(("goloop", "uvloop"))
    # goloop's own ratios first: they are the headline.
    return sorted(pairs, key=lambda p: p[0] != "goloop")


def ratio(cells, bench, num, den):
    a, b = cells[bench, num]["median"], cells[bench, den]["median"]
    return a / b if a and b else None


# --- formatting ------------------------------------------------------------------------------

def fmt_ops(value):
    """ops/s with 3 significant digits and a k/M suffix: 1234567 -> '1.23M'."""
    # Round to 3 significant digits before picking the suffix, so 999.6k prints as 1.00M.
    value = float(f"{value:.3g}")
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            break
    else:
        scale, suffix = 1, ""
    scaled = value / scale
    decimals = max(0, 2 - math.floor(math.log10(scaled))) if scaled > 0 else 0
    return f"{scaled:.{decimals}f}{suffix}"


def fmt_cell(cell):
    if cell["median"] is None:
        return "failed"
    text = f"{fmt_ops(cell['median'])} ±{cell['spread'] * 100:.0f}%"
    # A cell whose median hides failed rounds must say so.
    return text + ("*" if cell["errors"] else "")


def fmt_ratio(value):
    # Three significant digits, like the ops/s: 0.873x, 2.01x, 11.1x, 123x.
    if value is None:
        return "-"
    value = float(f"{value:.3g}")
    return f"{value:.0f}x" if value >= 100 else f"{value:#.3g}x"


def table_rows(cells, loops, benches):
    """Header row plus one row of strings per benchmark."""
    pairs = ratio_columns(loops)
    header = ["benchmark", *loops, *(f"{a}/{b}" for a, b in pairs)]
    rows = [header]
    for bench in benches:
        row = [BENCHMARKS[bench].label]
        row += [fmt_cell(cells[bench, loop]) for loop in loops]
        row += [fmt_ratio(ratio(cells, bench, a, b)) for a, b in pairs]
        rows.append(row)
    return rows


def describe(meta):
    """Lines that say where the numbers came from; printed above the table."""
    loops = ", ".join(f"{name} {version}" for name, version in meta["loops"].items())
    lines = [
        f"Python {meta['python']} ({meta['implementation']}) on {meta['platform']}, "
        f"{meta['cpus']} CPUs",
        f"command: {meta['command']}",
        f"loops: {loops}",
    ]
    lines += [f"skipped {name}: {reason}" for name, reason in meta["skipped"].items()]
    lines.append(
        f"{meta['rounds']} rounds, interleaved (loop order rotated each round), each sample a "
        f"fresh process; cells are median ops/s ± half the min-max range; ratios compare "
        f"medians (>1 = faster)"
    )
    return lines


def failure_notes(cells):
    notes = []
    for (bench, loop), cell in cells.items():
        for error in sorted(set(cell["errors"])):
            count = cell["errors"].count(error)
            notes.append(f"* {loop} {bench}: {count} failed round(s): {error}")
    return notes


# --- command line ----------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default=",".join(LOOPS),
                        help="comma-separated loops (default: all that import)")
    parser.add_argument("--bench", default=",".join(BENCHMARKS),
                        help="comma-separated benchmarks (default: all)")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"interleaved rounds (default 7, {QUICK_ROUNDS} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_ROUNDS} rounds, n / {QUICK_DIVISOR}")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    parser.add_argument("--json", metavar="FILE", help="also write every sample as JSON")
    args = parser.parse_args(argv)
    args.loops = _split_names(parser, args.loops, LOOPS, "loop")
    args.bench = _split_names(parser, args.bench, BENCHMARKS, "benchmark")
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else 7
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _split_names(parser, text, known, what):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"unknown {what}(s) {unknown}; choose from {', '.join(known)}")
    return names


def main(argv):
    args = parse_args(argv)
    available, skipped = probe_loops(args.loops)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    loops = [name for name in args.loops if name in available]
    if not loops:
        print("no event loop could be imported; nothing to run", file=sys.stderr)
        return 1

    started = time.monotonic()
    divisor = QUICK_DIVISOR if args.quick else 1
    results = collect(args.rounds, loops, args.bench, divisor)
    cells = summarize(results, loops, args.bench)

    meta = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "command": shlex.join(["python", *sys.argv]),
        "loops": available,
        "skipped": skipped,
        "rounds": args.rounds,
        "quick": args.quick,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    rows = table_rows(cells, loops, args.bench)
    notes = failure_notes(cells)

    print("\n".join(["", *describe(meta), "", render_text(rows), *notes]))
    if args.markdown:
        _write(args.markdown, "\n".join(
            [*(f"- {line}" for line in describe(meta)), "", render_markdown(rows),
             *(["", *notes] if notes else [])]) + "\n")
    if args.json:
        summary = {f"{bench}/{loop}": cell for (bench, loop), cell in cells.items()}
        _write(args.json, json.dumps({"meta": meta, "summary": summary, "samples": results},
                                     indent=2) + "\n")
    return 0


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
