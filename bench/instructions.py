"""Instructions per operation under callgrind: a deterministic companion to
run.py on machines too noisy for wall-clock ratios.

    python bench/instructions.py [--loops uvloop,goloop] [--bench call_soon,...] [--n N]

Each workload from workloads.py runs twice per loop, at n and 2n operations,
under `valgrind --tool=callgrind`; the difference of the two instruction
totals divided by n is the cost of one operation, start-up and warm-up
cancelled out. Counts are user-space instructions only: the kernel's share
(the epoll_wait syscall, for one) is not in them. Go's asynchronous
preemption signals are turned off (GODEBUG=asyncpreemptoff=1) because
callgrind cannot follow them.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BENCH = "call_soon,call_soon_burst,call_later,gather,sleep0,future,udp_echo"


def instructions(loop, bench, n):
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, os.path.join(HERE, "workloads.py"), loop, bench, str(n)],
            env=dict(os.environ, GODEBUG="asyncpreemptoff=1"),
            capture_output=True, text=True, check=True,
        ).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loops", default="asyncio,uvloop,goloop")
    ap.add_argument("--bench", default=DEFAULT_BENCH)
    ap.add_argument("--n", type=int, default=20000)
    args = ap.parse_args()
    loops = args.loops.split(",")
    print(f"instructions per op (callgrind, n={args.n} vs {2 * args.n}), Python {sys.version.split()[0]}")
    print(f"{'benchmark':18}" + "".join(f"{name:>10}" for name in loops)
          + "".join(f"{'goloop/' + name:>16}" for name in loops if name != "goloop"))
    for bench in args.bench.split(","):
        per_op = {}
        for loop in loops:
            per_op[loop] = (instructions(loop, bench, 2 * args.n)
                            - instructions(loop, bench, args.n)) / args.n
        row = f"{bench:18}" + "".join(f"{per_op[name]:10.0f}" for name in loops)
        if "goloop" in per_op:
            # fewer instructions is better: report how many times fewer
            row += "".join(f"{per_op[name] / per_op['goloop']:15.2f}x"
                           for name in loops if name != "goloop")
        print(row, flush=True)


if __name__ == "__main__":
    main()
