#!/usr/bin/python3
"""Table-driven end-to-end tests of the loco command-line tools.

Each tool has a table of cases in cases/<tool>.py (a list CASES of Case rows); the rows in
cases/common.py run for every tool. A case runs the tool with arguments (or a shell pipeline
with the build's bin folder first on PATH) in a fresh scratch folder, then checks the exit code,
substrings or regexes of stdout and stderr, files that must or must not exist afterwards, inputs
that must be left unchanged, exact folder listings, and optionally a Python check function.
Fixtures are made once per run by fixtures.py.

Placeholders in every string of a case: {fx} the fixtures folder, {tmp} the case's scratch folder,
{bin} the tools' folder, {man} the generated man pages' folder, {tool} the tool under test,
{version} the project version.

Every args case (not sh) also checks the conventions all tools share: no crash (signal), no exit
70 unless expected, and on exit 2-5 a first stderr line "<tool>: error: ..."; on exit 3-5 that
line is the whole of stderr (one-line errors). A case can opt out with strict_errors=False.

Usage:
  clitest.py --build BUILD_DIR [TOOL ...] [-k SUBSTRING] [--work DIR] [--keep] [--list]
  (TOOL defaults to every loco* binary in BUILD_DIR/bin; -k runs the cases whose name contains it.)
Exit status: 0 all passed, 1 a case failed (or numpy, h5py or a program a case needs is missing), 2 usage.
Nothing is skipped: a test that cannot run verifies nothing, so a missing prerequisite fails and names
what to install (scripts/setup-deps installs all of it).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Iterable, Sequence

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

HERE = Path(__file__).resolve().parent
TIMEOUT = 120  # seconds per command; the fixtures are tiny, so anything near this is a hang


class CaseFailure(AssertionError):
    """A check of a case did not hold."""


@dataclasses.dataclass
class Result:
    code: int
    stdout_bytes: bytes
    stderr: str
    command: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", errors="replace")

    def json(self):
        """stdout parsed as one JSON document (CaseFailure when it is not)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:
            raise CaseFailure(f"stdout is not JSON ({e}): {self.stdout[:400]!r}") from None


def _strs(x) -> tuple:
    if x is None:
        return ()
    return (x,) if isinstance(x, str) else tuple(x)


@dataclasses.dataclass
class Case:
    """One row of a tool's table. Give either args (the tool's arguments) or sh (a bash pipeline)."""

    name: str
    args: Sequence[str] | None = None
    sh: str | None = None
    stdin: str | None = None            # file fed to stdin (default: empty stdin)
    env: dict | None = None             # extra environment variables
    setup: Sequence[str] = ()           # bash commands run first in {tmp}; each must exit 0
    code: int = 0                       # expected exit status
    stdout: str | Sequence[str] = ()    # substrings that must appear
    stderr: str | Sequence[str] = ()
    stdout_re: str | Sequence[str] = ()  # regexes (re.MULTILINE) that must match
    stderr_re: str | Sequence[str] = ()
    not_stdout: str | Sequence[str] = ()  # substrings that must not appear
    not_stderr: str | Sequence[str] = ()
    stderr_empty: bool = False
    stdout_empty: bool = False
    exists: str | Sequence[str] = ()    # paths that must exist afterwards
    absent: str | Sequence[str] = ()    # paths that must not exist afterwards
    unchanged: str | Sequence[str] = ()  # files whose content must be the same before and after
    listing: dict | None = None         # {folder: [names]}: the folder holds exactly these entries
    check: Callable | None = None       # check(ctx, result): raise (e.g. assert) on failure
    strict_errors: bool = True
    requires: str | Sequence[str] = ()  # programs that must be on PATH, else the case fails
    xfail: str | dict | None = None     # a known bug (the reason, or {tool: reason} in common rows):
                                        # failing is expected, passing is reported so the mark goes


@dataclasses.dataclass
class Context:
    """What a case runs against; check functions get it as their first argument."""

    tool: str
    bin: Path
    man: Path | None
    fx: Path
    tmp: Path
    version: str

    def expand(self, s: str, regex: bool = False) -> str:
        """s with its placeholders replaced (escaped for a regular expression when regex is set)."""
        subs = {"{fx}": self.fx, "{tmp}": self.tmp, "{bin}": self.bin, "{tool}": self.tool,
                "{version}": self.version, "{man}": self.man if self.man else "<no man folder>"}
        value = (lambda m: re.escape(str(subs[m.group(0)]))) if regex else (lambda m: str(subs[m.group(0)]))
        return re.sub(r"\{(fx|tmp|bin|tool|version|man)\}", value, s)

    def env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.pop("LOCO_THREADS", None)
        for k, v in (extra or {}).items():
            env[k] = self.expand(str(v))
        return env

    def run(self, *args: str, stdin: str | None = None, sh: bool = False, env: dict | None = None) -> Result:
        """Runs a tool (args[0], looked up in bin) or, with sh=True, one bash command line."""
        if sh:
            (line,) = args
            cmd = ["bash", "-o", "pipefail", "-c", self.expand(line)]
            shown = self.expand(line)
        else:
            exe = self.bin / args[0]
            cmd = [str(exe)] + [self.expand(a) for a in args[1:]]
            shown = " ".join(_quote(c) for c in [args[0]] + cmd[1:])
        stdin_f = open(self.expand(stdin), "rb") if stdin else subprocess.DEVNULL
        try:
            p = subprocess.run(cmd, stdin=stdin_f, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.tmp,
                               env=self.env(env), timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise CaseFailure(f"timed out after {TIMEOUT} s: {shown}") from None
        finally:
            if stdin:
                stdin_f.close()
        if stdin:
            shown += f" < {self.expand(stdin)}"
        return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", errors="replace"), shown)

    def json(self, *args: str) -> dict:
        """Runs a tool that must exit 0 and returns its stdout parsed as JSON."""
        r = self.run(*args)
        if r.code != 0:
            raise CaseFailure(f"{r.command}: exit {r.code}: {r.stderr.strip()}")
        return r.json()


def all_of(*checks: Callable) -> Callable:
    """A check that runs several checks in turn."""
    def check(ctx, r):
        for c in checks:
            c(ctx, r)
    return check


def _quote(s: str) -> str:
    return s if re.fullmatch(r"[\w./:=+,@%-]+", s) else "'" + s.replace("'", "'\\''") + "'"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _excerpt(s: str, limit: int = 1500) -> str:
    s = s if len(s) <= limit else s[:limit] + f"... [{len(s) - limit} more characters]"
    return "\n".join("    | " + line for line in s.splitlines()) or "    | (empty)"


def _check_result(case: Case, ctx: Context, r: Result) -> None:
    """Raises CaseFailure listing every expectation of case that r does not meet."""
    problems = []
    if r.code < 0:
        problems.append(f"killed by signal {signal.Signals(-r.code).name}")
    elif r.code != case.code:
        problems.append(f"exit {r.code}, expected {case.code}")
    for stream, text in (("stdout", r.stdout), ("stderr", r.stderr)):
        for s in _strs(getattr(case, stream)):
            if ctx.expand(s) not in text:
                problems.append(f"{stream} lacks {ctx.expand(s)!r}")
        for s in _strs(getattr(case, "not_" + stream)):
            if ctx.expand(s) in text:
                problems.append(f"{stream} has {ctx.expand(s)!r}")
        for rx in _strs(getattr(case, stream + "_re")):
            if not re.search(ctx.expand(rx, regex=True), text, re.MULTILINE):
                problems.append(f"{stream} does not match /{ctx.expand(rx, regex=True)}/")
        if getattr(case, stream + "_empty") and text:
            problems.append(f"{stream} is not empty")
    if case.args is not None and case.strict_errors and r.code >= 0:
        lines = r.stderr.splitlines()
        prefix = f"{ctx.tool}: error: "
        if case.code != 70 and ("internal error" in r.stderr or r.code == 70):
            problems.append("an internal error was reported")
        if 2 <= r.code <= 5:
            if not lines or not lines[0].startswith(prefix):
                problems.append(f"stderr does not start with {prefix!r}")
            elif r.code >= 3 and len(lines) != 1:
                problems.append(f"the error takes {len(lines)} lines of stderr, expected one")
    for p in _strs(case.exists):
        if not Path(ctx.expand(p)).exists():
            problems.append(f"{ctx.expand(p)} does not exist")
    for p in _strs(case.absent):
        if os.path.lexists(ctx.expand(p)):
            problems.append(f"{ctx.expand(p)} exists")
    for folder, names in (case.listing or {}).items():
        f = Path(ctx.expand(folder))
        have = sorted(os.listdir(f)) if f.is_dir() else None
        want = sorted(ctx.expand(n) for n in names)
        if have != want:
            problems.append(f"{f} holds {have}, expected exactly {want}")
    if problems:
        raise CaseFailure("; ".join(problems))
    if case.check is not None:
        case.check(ctx, r)


def run_case(case: Case, ctx: Context) -> None:
    """Runs one case in a fresh ctx.tmp; raises CaseFailure or passes."""
    for prog in _strs(case.requires):
        if shutil.which(prog) is None:
            raise CaseFailure(f"{prog} is not installed (scripts/setup-deps installs it)")
    if (case.args is None) == (case.sh is None):
        raise CaseFailure("a case gives exactly one of args and sh")
    if ctx.tmp.exists():
        shutil.rmtree(ctx.tmp)
    ctx.tmp.mkdir(parents=True)
    for line in case.setup:
        r = ctx.run(line, sh=True, env=case.env)
        if r.code != 0:
            raise CaseFailure(f"setup failed (exit {r.code}): {r.command}\n{_excerpt(r.stderr)}")
    before = {}
    for p in _strs(case.unchanged):
        path = Path(ctx.expand(p))
        if not path.is_file():
            raise CaseFailure(f"unchanged: {path} is not a file before the run")
        before[path] = _sha256(path)
    if case.sh is not None:
        r = ctx.run(case.sh, sh=True, stdin=case.stdin, env=case.env)
    else:
        r = ctx.run(ctx.tool, *case.args, stdin=case.stdin, env=case.env)
    try:
        changed = [str(p) for p, h in before.items() if not p.is_file() or _sha256(p) != h]
        if changed:
            raise CaseFailure(f"inputs changed: {changed}")
        _check_result(case, ctx, r)
    except AssertionError as e:
        msg = str(e) or traceback.format_exc(limit=-1).strip()
        raise CaseFailure(f"{msg}\n  $ {r.command}\n  exit {r.code}\n  stdout:\n{_excerpt(r.stdout)}\n"
                          f"  stderr:\n{_excerpt(r.stderr)}") from None


# ------------------------------------------------------------------------------------------------
# Loading the tables.


def _load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"loco_cli_cases_{path.stem.replace('-', '_')}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cases_for(tool: str) -> tuple[list[Case], bool]:
    """The common cases plus cases/<tool>.py's CASES; the flag tells whether the tool has a table."""
    common = _load_module(HERE / "cases" / "common.py").CASES
    own = HERE / "cases" / f"{tool}.py"
    if not own.exists():
        return list(common), False
    return list(common) + list(_load_module(own).CASES), True


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:80] or "case"


def project_version() -> str:
    text = (HERE.parent.parent / "CMakeLists.txt").read_text()
    m = re.search(r"project\(\s*loco\s+VERSION\s+([0-9.]+)", text)
    return m.group(1) if m else "unknown"


def discover_tools(bin_dir: Path) -> list[str]:
    return sorted(p.name for p in bin_dir.glob("loco*") if p.is_file() and os.access(p, os.X_OK))


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the loco CLI test tables.")
    ap.add_argument("tools", nargs="*", help="tools to test (default: every loco* binary in the bin folder)")
    ap.add_argument("--build", type=Path, help="build folder (its bin/ and man/ are used)")
    ap.add_argument("--bin", type=Path, help="folder of the tool binaries (default: BUILD/bin)")
    ap.add_argument("--man", type=Path, help="folder of the generated man pages (default: BUILD/man)")
    ap.add_argument("--version", dest="version", help="expected version (default: from CMakeLists.txt)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a new temporary folder)")
    ap.add_argument("-k", dest="pattern", help="run only the cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder even when all pass")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    a = ap.parse_args(argv)
    bin_dir = a.bin or (a.build / "bin" if a.build else None)
    man_dir = a.man or (a.build / "man" if a.build else None)
    if bin_dir is None:
        ap.error("give --build or --bin")
    bin_dir = bin_dir.resolve()
    tools = a.tools or discover_tools(bin_dir)
    if not tools:
        print(f"clitest: no loco tools in {bin_dir}", file=sys.stderr)
        return 1
    missing = [m for m in ("numpy", "h5py") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"clitest: FAIL: Python modules {missing} are missing (the fixtures are written with them; "
              "scripts/setup-deps installs them)", file=sys.stderr)
        return 1
    import fixtures

    if a.list:
        for tool in tools:
            for c in cases_for(tool)[0]:
                print(f"{tool}: {c.name}")
        return 0

    work = (a.work or Path(tempfile.mkdtemp(prefix="loco-cli-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    fx = fixtures.make(work / "fixtures")
    version = a.version or project_version()
    passed = failed = xfailed = 0
    for tool in tools:
        if not (bin_dir / tool).is_file():
            print(f"FAIL {tool}: no such binary {bin_dir / tool}")
            failed += 1
            continue
        cases, has_table = cases_for(tool)
        if not has_table:
            print(f"note {tool}: no cases/{tool}.py, only the common cases run")
        seen = set()
        for case in cases:
            if a.pattern and a.pattern not in case.name:
                continue
            slug = _slug(case.name)
            while slug in seen:
                slug += "-"
            seen.add(slug)
            ctx = Context(tool, bin_dir, man_dir.resolve() if man_dir else None, fx, work / "cases" / tool / slug,
                          version)
            label = f"{tool}: {case.name}"
            xfail = case.xfail.get(tool) if isinstance(case.xfail, dict) else case.xfail
            try:
                run_case(case, ctx)
            except CaseFailure as e:
                if xfail:
                    xfailed += 1
                    print(f"xfail {label} (known bug: {xfail})")
                else:
                    failed += 1
                    print(f"FAIL {label}\n  {e}")
                continue
            except Exception:  # a broken check function or table row
                failed += 1
                print(f"FAIL {label} (error in the test itself)\n{traceback.format_exc()}")
                continue
            if xfail:
                failed += 1
                print(f"FAIL {label}: passed, but it is marked xfail ({xfail}); remove the mark")
            else:
                passed += 1
                print(f"ok   {label}")
    if xfailed:
        print(f"{xfailed} known bugs (xfail)")
    print(f"{passed} passed, {failed} failed")
    if failed == 0 and not a.keep and a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"scratch files kept in {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.modules["clitest"] = sys.modules["__main__"]  # the tables import clitest: one module, one CaseFailure
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `clitest.py --list | head` ends quietly
    sys.path.insert(0, str(HERE))
    sys.exit(main())
