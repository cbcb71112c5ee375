#!/usr/bin/env python3
"""Run CPython's own asyncio test-suite (test.test_asyncio) against goloop.

    python tests/conformance/run_cpython.py [--json OUT] [-j N] [MODULE ...]
    make conformance PYTHON=python3.12

The suite is the one installed with the interpreter that runs this script
(``<stdlib>/test/test_asyncio``; on Debian it is the package
libpythonX.Y-testsuite). goloop must be built in place for that interpreter
(``make build PYTHON=...``); the repository root is put on sys.path.

How goloop is put under the tests
=================================
Each test module runs in a child process of its own (``--child``). Before the
module is imported, the child applies these patches, and never installs an
event loop policy of its own:

1. ``asyncio.events.new_event_loop`` and ``asyncio.new_event_loop`` are
   replaced by a counting wrapper of ``goloop.new``. That covers the tests
   that call ``asyncio.new_event_loop()`` themselves, ``asyncio.run()`` and
   ``asyncio.Runner()`` without a loop_factory (both call
   ``events.new_event_loop()``), and ``unittest.IsolatedAsyncioTestCase`` on
   3.11/3.12 (its runner is ``asyncio.Runner(debug=True)``).
2. On 3.13+, ``unittest.IsolatedAsyncioTestCase.loop_factory`` is set to the
   same wrapper (a staticmethod), so its runner gets goloop from its
   loop_factory and does not go through the policy at all.
3. Loop-parametrized classes: every TestCase class of the module that defines
   ``create_event_loop`` itself (test_events' SelectorEventLoopTests,
   EPollEventLoopTests, ...; the same in test_sock_lowlevel, test_sendfile)
   is removed from the run, and for each distinct set of its bases (the
   mixins) one class ``Goloop_<FirstMixin>`` is made, a subclass of the
   first such class, whose ``create_event_loop`` returns a goloop loop.
4. Per-module hooks (``MODULE_HOOKS``): test_runners makes its loops through
   a test policy (``BaseTest.new_loop`` builds a mocked BaseEventLoop); the
   hook makes ``new_loop`` return a goloop loop with the ``shutdown_ag_run``
   flag the test's tearDown checks, and patch 1 is undone for that module so
   that the test policy is still the one asked.
5. An IsolatedAsyncioTestCase class that sets its own ``loop_factory``
   (3.14's test_taskgroups: ``asyncio.EventLoop``, or a function calling
   ``asyncio.EventLoop()``) gets the wrapper instead, or its function is
   called with ``asyncio.EventLoop`` patched to the wrapper.

To test a clean build rather than this working tree, export a commit
(``git archive HEAD | tar -x -C DIR``), ``make build`` there, and pass
``--goloop-path DIR``.

Which tests count
=================
The wrapper counts the loops it creates. A test that ran without creating a
goloop loop did not exercise goloop (it used test_utils.TestLoop, the fake
loop of test_tasks/test_futures, a mocked BaseEventLoop, a stock
SelectorEventLoop, or no loop at all): it is reported as ``n/a`` whatever its
outcome, and does not count as passed or failed. The others are:

  passed      passed
  failed      failed/errored/timed out/crashed, and not in expectations.txt:
              a goloop bug, or a missing entry (the judge's red)
  xfail       failed, and listed in expectations.txt (with the reason)
  xpass       passed, but listed as expected to fail: the entry is stale
  skipped     skipped by the test itself (unittest.skip...), or listed as
              ``skip`` in expectations.txt (not run at all)

Each test has a time limit (``--timeout``, 60 s by default): a watchdog thread
in the child records the test as ``timeout`` with every thread's stack and
ends the child; the parent starts a new child for the rest of the module
(so does a crash: the test that was running is recorded as ``crash``).

Exit status: 0 when no test is ``failed`` (xpass only warns), 1 otherwise.
"""

import argparse
import fnmatch
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXPECTATIONS = os.path.join(HERE, "expectations.txt")

# test_windows_* are Windows-only; the rest is everything in the package.
EXCLUDED_MODULES = {"test_windows_events", "test_windows_utils"}

OUTCOMES_BAD = ("fail", "error", "timeout", "crash", "unexpected-success")


# ---------------------------------------------------------------------------
# expectations.txt


def load_expectations(path=EXPECTATIONS, version=None):
    """Return a list of (pattern, kind, versions, reason).

    A line is ``PATTERN  KIND[@VERSIONS]  REASON``: PATTERN an fnmatch
    pattern over the short test id (``test_events.Goloop_X.test_y``), KIND
    ``xfail`` (run; a failure is expected) or ``skip`` (not run: it hangs or
    breaks the process), VERSIONS an optional comma list of ``3.12`` /
    ``3.13+`` / ``-3.12`` the entry applies to. ``#`` starts a comment.
    """
    version = version or "%d.%d" % sys.version_info[:2]
    entries = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split(None, 2)
            if len(parts) < 3:
                raise SystemExit(f"{path}:{lineno}: an entry needs a pattern, a kind and a reason")
            pattern, kind, reason = parts
            kind, _, versions = kind.partition("@")
            if kind not in ("xfail", "skip"):
                raise SystemExit(f"{path}:{lineno}: unknown kind {kind!r}")
            if versions and not _version_matches(version, versions):
                continue
            entries.append((pattern, kind, reason))
    return entries


def _vtuple(s):
    return tuple(int(x) for x in s.split("."))


def _version_matches(version, spec):
    v = _vtuple(version)
    for item in spec.split(","):
        if item.endswith("+"):
            if v >= _vtuple(item[:-1]):
                return True
        elif item.startswith("-"):
            if v <= _vtuple(item[1:]):
                return True
        elif v == _vtuple(item):
            return True
    return False


def match_expectation(test_id, entries):
    """(kind, reason) of the entry for test_id, or None; a skip entry wins
    over an xfail one."""
    found = None
    for pattern, kind, reason in entries:
        if fnmatch.fnmatchcase(test_id, pattern):
            if kind == "skip":
                return kind, reason
            found = found or (kind, reason)
    return found


# ---------------------------------------------------------------------------
# The child: one module (the rest of it after a timeout/crash).

_loops_created = 0


def _install_goloop():
    """Patches 1 and 2 of the docstring. Return the factory."""
    sys.path.insert(0, os.environ.get("GOLOOP_CONFORMANCE_PATH") or REPO)
    import asyncio
    import asyncio.events

    import goloop

    def goloop_factory():
        global _loops_created
        _loops_created += 1
        return goloop.new()

    goloop_factory._goloop_conformance = True
    asyncio.events.new_event_loop = goloop_factory
    asyncio.new_event_loop = goloop_factory
    if hasattr(unittest.IsolatedAsyncioTestCase, "loop_factory"):
        unittest.IsolatedAsyncioTestCase.loop_factory = staticmethod(goloop_factory)
    return goloop_factory


def _hook_test_runners(mod, factory, original_new_event_loop):
    import asyncio
    import asyncio.events

    # The module's tests set a TestPolicy whose new_event_loop calls
    # BaseTest.new_loop; keep the policy path, and give it goloop loops.
    asyncio.events.new_event_loop = original_new_event_loop
    asyncio.new_event_loop = original_new_event_loop

    def new_loop(self):
        loop = factory()
        loop.shutdown_ag_run = False
        orig = loop.shutdown_asyncgens

        async def shutdown_asyncgens():
            loop.shutdown_ag_run = True
            await orig()

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop

    mod.BaseTest.new_loop = new_loop


MODULE_HOOKS = {"test_runners": _hook_test_runners}


def _parametrize_loops(mod, factory):
    """Patch 3: replace loop-parametrized classes by goloop variants."""
    groups = {}
    for name in sorted(vars(mod)):
        obj = getattr(mod, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, unittest.TestCase)
            and obj.__module__ == mod.__name__
            and "create_event_loop" in vars(obj)
        ):
            groups.setdefault(obj.__bases__, []).append(obj)
    for bases, classes in groups.items():
        for cls in classes:
            delattr(mod, cls.__name__)
        mixin = next((b for b in bases if not issubclass(b, unittest.TestCase)), bases[0])
        name = "Goloop_" + mixin.__name__
        variant = type(
            name,
            (classes[0],),
            {
                "create_event_loop": lambda self: factory(),
                "__module__": mod.__name__,
                "__qualname__": name,
            },
        )
        setattr(mod, name, variant)


def _patch_loop_factories(mod, factory):
    """Patch 5: IsolatedAsyncioTestCase classes of the module that name
    their own loop_factory (3.14's test_taskgroups: asyncio.EventLoop, or a
    function that calls asyncio.EventLoop() and sets a task factory) get
    goloop instead: asyncio.EventLoop itself becomes the goloop factory,
    and a function is called with asyncio.EventLoop patched likewise."""
    import asyncio

    for obj in list(vars(mod).values()):
        if not (isinstance(obj, type) and issubclass(obj, unittest.IsolatedAsyncioTestCase)
                and obj.__module__ == mod.__name__ and "loop_factory" in vars(obj)):
            continue
        lf = vars(obj)["loop_factory"]
        if lf is None:
            continue
        if lf is asyncio.EventLoop:
            new = factory
        else:
            fn = lf.__func__ if isinstance(lf, staticmethod) else lf

            def new(fn=fn):
                saved = asyncio.EventLoop
                asyncio.EventLoop = factory
                try:
                    return fn()
                finally:
                    asyncio.EventLoop = saved

        obj.loop_factory = staticmethod(new)


def short_id(test):
    tid = test.id()
    prefix = "test.test_asyncio."
    return tid[len(prefix):] if tid.startswith(prefix) else tid


class _Recorder(unittest.TestResult):
    """Writes one JSON line per test start and end to the result file."""

    def __init__(self, out, skip_ids):
        super().__init__()
        self.out = out
        self.skip_ids = skip_ids
        self.current = None
        self.started_at = None
        self.loops_before = 0
        self.outcome = None
        self.detail = ""

    def _write(self, rec):
        self.out.write(json.dumps(rec) + "\n")
        self.out.flush()

    def startTest(self, test):
        super().startTest(test)
        self.current = short_id(test)
        self.outcome, self.detail = "pass", ""
        self.loops_before = _loops_created
        self._write({"event": "start", "id": self.current})
        self.started_at = time.monotonic()

    def stopTest(self, test):
        super().stopTest(test)
        if self.current is None:
            # 3.12+ reports a skipped test without startTest (see addSkip).
            return
        self._write(
            {
                "event": "end",
                "id": self.current,
                "outcome": self.outcome,
                "loops": _loops_created - self.loops_before,
                "seconds": round(time.monotonic() - self.started_at, 3),
                "detail": self.detail,
            }
        )
        self.current = None
        self.started_at = None

    def _bad(self, outcome, test, err):
        # The first failure wins (a subtest, then the test's own tearDown).
        if self.outcome in OUTCOMES_BAD:
            self.detail += "\n-- and --\n" + self._exc_info_to_string(err, test)[-3000:]
            return
        self.outcome = outcome
        self.detail = self._exc_info_to_string(err, test)[-6000:]

    def addError(self, test, err):
        super().addError(test, err)
        if self.current is None:
            # setUpClass/setUpModule/tearDownModule: a test of its own.
            self._write({"event": "end", "id": short_id(test), "outcome": "error", "loops": 0,
                         "seconds": 0, "detail": self._exc_info_to_string(err, test)[-6000:]})
            return
        self._bad("error", test, err)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._bad("fail", test, err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "fail" if issubclass(err[0], test.failureException) else "error"
            self._bad(kind, subtest, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self.current is None:
            self._write({"event": "end", "id": short_id(test), "outcome": "skip", "loops": 0,
                         "seconds": 0, "detail": reason})
            return
        self.outcome, self.detail = "skip", reason

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.outcome = "expected-failure"

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.outcome = "unexpected-success"


def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


def _filter_suite(suite, keep):
    """A suite of the same shape (so class/module fixtures still run) holding
    only the tests for which keep(test) is true."""
    out = unittest.TestSuite()
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            sub = _filter_suite(t, keep)
            if sub.countTestCases():
                out.addTest(sub)
        elif keep(t):
            out.addTest(t)
    return out


def child_main(module, result_path, exclude_path, timeout):
    import asyncio.events

    # A shell starts `cmd &` with SIGINT ignored, and then
    # _thread.interrupt_main() does nothing: the tests that interrupt
    # themselves (test_runners) would wait for a KeyboardInterrupt forever.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    original_new_event_loop = asyncio.events.new_event_loop
    factory = _install_goloop()
    mod = importlib.import_module("test.test_asyncio." + module)
    hook = MODULE_HOOKS.get(module)
    if hook is not None:
        hook(mod, factory, original_new_event_loop)
    _parametrize_loops(mod, factory)
    _patch_loop_factories(mod, factory)

    exclude = set()
    if exclude_path:
        with open(exclude_path) as f:
            exclude = set(json.load(f))
    entries = load_expectations()

    out = open(result_path, "a")
    skipped_by_list = []

    def keep(test):
        tid = short_id(test)
        if tid in exclude:
            return False
        m = match_expectation(tid, entries)
        if m is not None and m[0] == "skip":
            skipped_by_list.append(tid)
            return False
        return True

    suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
    suite = _filter_suite(suite, keep)
    rec = _Recorder(out, exclude)
    for tid in skipped_by_list:
        rec._write({"event": "end", "id": tid, "outcome": "listed-skip", "loops": 0,
                    "seconds": 0, "detail": ""})

    def watchdog():
        while True:
            time.sleep(0.5)
            started, current = rec.started_at, rec.current
            if started is not None and time.monotonic() - started > timeout:
                # sys._current_frames() under the GIL, not faulthandler's
                # dump (which reads running threads' frames unlocked and
                # can crash the process it reports on).
                parts = []
                for ident, frame in sys._current_frames().items():
                    if ident != threading.get_ident():
                        parts.append(f"Thread {ident:#x}:\n" + "".join(traceback.format_stack(frame)))
                stacks = "\n".join(parts)[-8000:]
                rec._write({"event": "end", "id": current, "outcome": "timeout",
                            "loops": _loops_created - rec.loops_before,
                            "seconds": round(time.monotonic() - started, 3),
                            "detail": f"no result after {timeout}s; stacks:\n{stacks}"})
                os._exit(3)

    threading.Thread(target=watchdog, daemon=True, name="conformance-watchdog").start()
    suite.run(rec)
    out.write(json.dumps({"event": "done"}) + "\n")
    out.close()
    # Do not wait for interpreter teardown: a leaked loop or thread there is
    # no test's result.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# ---------------------------------------------------------------------------
# The parent.


def list_modules(python):
    code = (
        "import os, test.test_asyncio as p;"
        "print(' '.join(sorted(f[:-3] for f in os.listdir(os.path.dirname(p.__file__))"
        " if f.startswith('test_') and f.endswith('.py'))))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{python}: test.test_asyncio is not installed:\n{out.stderr}")
    return [m for m in out.stdout.split() if m not in EXCLUDED_MODULES]


def run_module(python, module, timeout, module_timeout, log_dir, goloop_path):
    """Run one module in child processes until every test has a result."""
    records = {}
    order = []
    attempts = 0
    deadline = time.monotonic() + module_timeout
    stderr_tail = ""
    with tempfile.TemporaryDirectory() as tmp:
        result_path = os.path.join(tmp, "results.jsonl")
        exclude_path = os.path.join(tmp, "exclude.json")
        while True:
            attempts += 1
            with open(exclude_path, "w") as f:
                json.dump(sorted(records), f)
            open(result_path, "w").close()
            cmd = [python, os.path.abspath(__file__), "--child", module,
                   "--result", result_path, "--exclude", exclude_path,
                   "--timeout", str(timeout)]
            env = dict(os.environ, GOLOOP_CONFORMANCE_PATH=goloop_path,
                       PYTHONPATH=goloop_path + os.pathsep + os.environ.get("PYTHONPATH", ""))
            env.setdefault("PYTHONFAULTHANDLER", "1")
            log_path = os.path.join(log_dir, f"{module}.{attempts}.log") if log_dir else os.devnull
            remaining = max(deadline - time.monotonic(), 1)
            with open(log_path, "w") as log:
                # A session of its own, so that whatever the tests left
                # behind (a forked pool worker...) is ended with the child.
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
                try:
                    rc = proc.wait(timeout=remaining + timeout)
                except subprocess.TimeoutExpired:
                    rc = "module-timeout"
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
            if log_dir:
                with open(log_path) as log:
                    stderr_tail = log.read()[-3000:]
            done = False
            running = None
            with open(result_path) as f:
                for line in f:
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue
                    if r["event"] == "done":
                        done = True
                    elif r["event"] == "start":
                        running = r["id"]
                    else:
                        if r["id"] not in records:
                            order.append(r["id"])
                        records[r["id"]] = r
                        running = None
            if done:
                break
            if running is not None and running not in records:
                order.append(running)
                records[running] = {"id": running, "outcome": "crash", "loops": 1, "seconds": 0,
                                    "detail": f"the child ended (status {rc}) during this test\n"
                                              + stderr_tail}
                running = None
            elif rc != 3:
                # Died outside any test (import error, module fixture...).
                records[f"{module}.<module>"] = {
                    "id": f"{module}.<module>", "outcome": "crash", "loops": 1, "seconds": 0,
                    "detail": f"the child ended (status {rc}) outside a test\n" + stderr_tail}
                order.append(f"{module}.<module>")
                break
            if time.monotonic() > deadline:
                records[f"{module}.<rest>"] = {
                    "id": f"{module}.<rest>", "outcome": "timeout", "loops": 1, "seconds": 0,
                    "detail": f"module time limit of {module_timeout}s reached"}
                order.append(f"{module}.<rest>")
                break
    return [records[i] for i in order]


def classify(records, entries):
    """Give every record its category (see the docstring)."""
    for r in records:
        m = match_expectation(r["id"], entries)
        r["listed"] = m
        oc = r["outcome"]
        if oc == "listed-skip":
            r["category"] = "skipped"
            r["reason"] = m[1] if m else ""
        elif oc == "skip":
            r["category"] = "skipped"
            r["reason"] = r["detail"]
        elif r["loops"] == 0:
            r["category"] = "n/a"
        elif oc in ("pass", "expected-failure"):
            r["category"] = "xpass" if m else "passed"
        else:
            r["category"] = "xfail" if m else "failed"
            if m:
                r["reason"] = m[1]
    return records


CATEGORIES = ("passed", "failed", "xfail", "xpass", "skipped", "n/a")


def summarize(records):
    counts = dict.fromkeys(CATEGORIES, 0)
    for r in records:
        counts[r["category"]] += 1
    counts["run"] = counts["passed"] + counts["failed"] + counts["xfail"] + counts["xpass"]
    return counts


def _essence(detail):
    lines = [ln for ln in detail.strip().splitlines() if ln.strip()]
    m = re.findall(r'asyncio[/\\]events\.py", line \d+, in (\w+)\n\s*raise NotImplementedError', detail)
    if m:
        return f"NotImplementedError: AbstractEventLoop.{m[-1]}"
    for ln in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Failure|Exit|Interrupt|Warning)\b", ln) or \
                ln.startswith(("AssertionError", "NotImplementedError")):
            return ln.strip()[:200]
    return lines[-1].strip()[:200] if lines else ""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="test_asyncio modules (default: all but Windows')")
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter whose test suite is run (default: this one)")
    ap.add_argument("--json", metavar="FILE", help="write every result and the counts as JSON")
    ap.add_argument("--timeout", type=float, default=60, help="per-test time limit (s)")
    ap.add_argument("--module-timeout", type=float, default=900, help="per-module time limit (s)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="modules run at once")
    ap.add_argument("--log-dir", help="keep each child's output here")
    ap.add_argument("--goloop-path", default=REPO,
                    help="directory holding the goloop package to test, built for --python "
                         "(default: this checkout)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failure's traceback")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--exclude", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        child_main(args.child, args.result, args.exclude, args.timeout)
        return 0

    vinfo = subprocess.run([args.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2]);"
                            "print(sys.version.split()[0])"], capture_output=True, text=True)
    version, full_version = vinfo.stdout.split()
    entries = load_expectations(version=version)
    modules = args.modules or list_modules(args.python)
    if args.log_dir:
        os.makedirs(args.log_dir, exist_ok=True)

    results = {}

    def one(module):
        t0 = time.monotonic()
        recs = classify(run_module(args.python, module, args.timeout, args.module_timeout,
                                   args.log_dir, os.path.abspath(args.goloop_path)), entries)
        results[module] = recs
        c = summarize(recs)
        print(f"  {module:<26} {c['run']:>5} run {c['passed']:>5} passed {c['failed']:>4} failed "
              f"{c['xfail']:>4} xfail {c['xpass']:>3} xpass {c['skipped']:>4} skipped "
              f"{c['n/a']:>4} n/a   ({time.monotonic() - t0:.0f}s)", flush=True)

    print(f"CPython {full_version} test.test_asyncio against goloop in {args.goloop_path} "
          f"({args.python})", flush=True)
    if args.jobs > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as ex:
            list(ex.map(one, modules))
    else:
        for m in modules:
            one(m)

    total = dict.fromkeys(CATEGORIES + ("run",), 0)
    per_module = {}
    for m in modules:
        c = summarize(results[m])
        per_module[m] = c
        for k in total:
            total[k] += c[k]
    print(f"  {'TOTAL':<26} {total['run']:>5} run {total['passed']:>5} passed "
          f"{total['failed']:>4} failed {total['xfail']:>4} xfail {total['xpass']:>3} xpass "
          f"{total['skipped']:>4} skipped {total['n/a']:>4} n/a")

    failed = [r for m in modules for r in results[m] if r["category"] == "failed"]
    xpass = [r for m in modules for r in results[m] if r["category"] == "xpass"]
    if failed:
        print(f"\nFAILED (not in {os.path.relpath(EXPECTATIONS, REPO)}):")
        for r in failed:
            print(f"  {r['id']}  [{r['outcome']}] {_essence(r['detail'])}")
            if args.verbose:
                print("    " + r["detail"].replace("\n", "\n    "))
    if xpass:
        print("\nXPASS (listed as expected to fail, but passed):")
        for r in xpass:
            print(f"  {r['id']}  ({r['listed'][1]})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": full_version, "executable": args.python,
                       "per_module": per_module, "total": total,
                       "results": {m: results[m] for m in modules}}, f, indent=1)
    # The plain closing line.
    print(f"conformance: {total['passed']} passed, {total['failed']} failed, "
          f"{total['skipped']} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
