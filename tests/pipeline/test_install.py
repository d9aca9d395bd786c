#!/usr/bin/python3
"""loco installed as a user installs it, and used from there alone.

Installs the build into a temporary prefix (cmake --install BUILD --prefix PREFIX), then, with only
PREFIX/bin, /usr/bin and /bin on PATH and no LOCO_* variable: `loco --list` lists the installed tools
and pipelines; the main job's first round runs as `loco diloco ...` (the pipeline finds the installed
tools without --tools: every command of commands.log is a PREFIX/bin tool) and `loco report` reads it;
the pipelines answer by their own names (loco-fedavg, loco-gossip-pipeline); the man pages, the
pipelines' engine and the bash completion are in place and `loco help diloco` shows the installed
page. The installed tree is then moved, and still runs (the layout is relative).

Usage: test_install.py --cmake CMAKE --build BUILD [--work DIR] [--keep]
Exit: 0 passed, 1 a check failed.
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipetest import Failure, check, make_text, run  # noqa: E402


def user_env(prefix):
    """A user's environment: PREFIX/bin first, no LOCO_* variable, no build tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCO_")}
    env["PATH"] = f"{prefix}/bin:/usr/bin:/bin"
    return env


def first_round(prefix, work, name):
    """The main job's first round (scripts/main-job's options, smaller) from PREFIX; checks it."""
    env = user_env(prefix)
    out = work / name
    run(["loco", "diloco", "--data", work / "text.txt", "--preset", "gpt-tiny", "--workers", 2, "--rounds", 1,
         "--inner-steps", 2, "--batch", 4, "--lr", "3e-3", "--test-fraction", "0.05", "-o", out], env=env, cwd=work)
    check((out / "rounds" / "round-0001.h5").is_file(), f"{out}: no rounds/round-0001.h5")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    check([r["round"] for r in rows] == [0, 1], f"{out}/metrics.jsonl: rounds {[r['round'] for r in rows]}")
    tools = [line.split()[2] for line in (out / "commands.log").read_text().splitlines() if " run " in line]
    check(tools and all(t.startswith(f"{prefix}/bin/loco-") for t in tools),
          f"{out}: commands not from {prefix}/bin: {sorted(set(tools))}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cmake", required=True)
    ap.add_argument("--build", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/loco-install-test"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = a.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    prefix = work / "prefix"
    run([a.cmake, "--install", a.build, "--prefix", prefix])
    make_text(work / "text.txt", 3000)
    env = user_env(prefix)

    # What is installed, and where.
    for f in ["bin/loco", "bin/loco-worker", "bin/loco-diloco", "bin/loco-gossip", "bin/loco-gossip-pipeline",
              "libexec/loco/diloco", "libexec/loco/lib/pipeline.sh", "share/man/man1/loco-worker.1",
              "share/man/man7/loco-diloco.7", "share/man/man7/loco-gossip.7", "share/man/man5/loco-format.5",
              "share/bash-completion/completions/loco", "share/bash-completion/completions/loco-diloco",
              "share/bash-completion/completions/loco-worker"]:
        check((prefix / f).exists(), f"{prefix}/{f} was not installed")
    listing = run(["loco", "--list"], env=env).stdout
    for verb in ["worker", "aggregate", "gossip", "diloco", "fedavg", "gossip-pipeline", "report"]:
        check(f"\n  {verb} " in "\n" + listing, f"loco --list does not list {verb}:\n{listing}")

    out = first_round(prefix, work, "run")
    rep = run(["loco", "report", out, "--no-plots", "-o", work / "report"], env=env)
    check((work / "report" / "report.md").is_file(), f"loco report wrote no report.md: {rep.stderr}")
    check(run(["loco-fedavg", "--help"], env=env).stdout.startswith("Usage: loco-fedavg "), "loco-fedavg --help")
    check(run(["loco-gossip-pipeline", "--help"], env=env).stdout.startswith("Usage: loco-gossip-pipeline "),
          "loco-gossip-pipeline --help")
    check(run(["loco-gossip", "--help"], env=env).stdout.startswith("Usage: loco-gossip "), "loco-gossip --help")
    page = (prefix / "share/man/man7/loco-gossip.7").read_text()
    check(".B loco gossip-pipeline" in page, "loco-gossip.7's synopsis is not the installed verb gossip-pipeline")
    # bash-completion loads a command's file by its name: the link of loco-diloco is the one file.
    p = run(["bash", "-c", f"source {prefix}/share/bash-completion/completions/loco-diloco && "
             "COMP_LINE='loco-diloco --codec to'; COMP_POINT=${#COMP_LINE}; _loco_complete loco-diloco; "
             "echo ${COMPREPLY[*]}"], env=env)
    check(p.stdout.split() == ["topk"], f"the installed completion of loco-diloco --codec to: {p.stdout!r}")
    if shutil.which("man"):
        page = run(["loco", "help", "diloco"], env=dict(env, MANPAGER="cat", PAGER="cat")).stdout
        check("loco-diloco - DiLoCo" in page, f"loco help diloco:\n{page[:500]}")

    # Moved elsewhere, the tree still finds its pipelines and tools.
    moved = work / "moved"
    prefix.rename(moved)
    first_round(moved, work, "run-moved")

    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    print("test_install: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"test_install: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
