#!/usr/bin/python3
"""The bash completion the build generates (BUILD/completion/loco), loaded into bash.

Every tool of BIN and every pipeline is registered (complete -p); options complete, and the values
of the spec options complete with the names the library takes (--codec, --outer, --reduce,
--optimizer, --partition, --topology), for the tools and for the pipelines that pass them on;
`loco VERB ...` completes as loco-VERB; a spec's word after ':' or '=' completes as bash expects
(only the part after the word break is replaced).

Usage: test_completion.py --bin BUILD/bin --completion BUILD/completion/loco
Exit: 0 passed, 1 a check failed.
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

PIPELINES = ["loco-diloco", "loco-streaming-diloco", "loco-baseline", "loco-sparseloco", "loco-demo", "loco-fedavg",
             "loco-gossip-pipeline", "loco-report"]

failures = []


def bash(script, completion, bin_dir):
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    p = subprocess.run(["bash", "-c", f"source {completion}\n{script}"], capture_output=True, text=True, env=env,
                       timeout=60)
    if p.returncode != 0 or p.stderr:
        failures.append(f"bash failed (exit {p.returncode}): {p.stderr[:500]}\n{script}")
    return p.stdout


def complete(line, completion, bin_dir):
    """The completions bash offers for LINE (the cursor at its end)."""
    cmd = line.split()[0]
    script = (f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
              f"_loco_complete {cmd}\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"")
    return [w for w in bash(script, completion, bin_dir).splitlines() if w]


def expect(line, want, completion, bin_dir, exact=False):
    got = complete(line, completion, bin_dir)
    ok = sorted(got) == sorted(want) if exact else all(w in got for w in want)
    if not ok:
        failures.append(f"{line!r}: completions {got}, expected {'exactly ' if exact else ''}{want}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, type=Path)
    ap.add_argument("--completion", required=True, type=Path)
    a = ap.parse_args()
    c, b = a.completion.resolve(), a.bin.resolve()

    tools = sorted(p.name for p in b.iterdir() if p.name.startswith("loco"))
    registered = bash("complete -p", c, b)
    for cmd in tools + PIPELINES:
        if f"complete -o default -F _loco_complete {cmd}\n" not in registered:
            failures.append(f"{cmd} has no completion registered")

    cases = [
        ("loco-worker --scaf", ["--scaffold-control"], True),
        ("loco-worker --optimizer ad", ["adam", "adamw"], True),
        ("loco-worker --optimizer de", ["demo"], True),
        ("loco-compress --codec to", ["topk"], True),
        ("loco-compress --codec d", ["dct_topk"], True),
        ("loco-compress --codec topk:k=10+q", ["10+qsgd", "10+quant"], True),  # bash replaces after '='
        ("loco-aggregate --outer fed", ["fedavg", "fedavgm", "fedadagrad", "fedadam", "fedyogi"], True),
        ("loco-aggregate --reduce tri", ["trimmed-mean"], True),
        ("loco-aggregate --reduce bucket:s=2+kr", ["2+krum"], True),
        ("loco-shard --partition class", ["class-dirichlet"], True),
        ("loco-gossip --topology one", ["one-peer-exponential"], True),
        ("loco-convert --dtype b", ["bf16"], True),
        ("loco-diloco --codec qu", ["quant"], True),
        ("loco-diloco --outer nest", ["nesterov"], True),
        ("loco-diloco --reduce co", ["contributor-mean"], True),
        ("loco-diloco --inner-optimizer sg", ["sgd"], True),
        ("loco-diloco --executor slurm", ["slurm", "slurm-loop"], True),
        ("loco-diloco --inner-s", ["--inner-steps"], True),
        ("loco-fedavg --reduce multi", ["multi-krum"], True),
        ("loco-fedavg --partition dir", ["dirichlet"], True),
        ("loco-gossip-pipeline --topology er", ["erdos-renyi"], True),
        ("loco-report --no", ["--no-plots"], True),
        ("loco insp", ["inspect"], True),
        ("loco help wor", ["worker"], True),
        ("loco --li", ["--list"], True),
        ("loco diloco --cod", ["--codec"], True),
        ("loco diloco --codec top", ["topk"], True),
        ("loco worker --optimizer nes", ["nesterov"], True),
    ]
    for line, want, exact in cases:
        expect(line, want, c, b, exact)
    # A value without words completes nothing itself (bash's -o default offers file names).
    expect("loco-worker --steps ", [], c, b, exact=True)

    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"test_completion: all checks passed ({len(tools) + len(PIPELINES)} commands, {len(cases) + 1} lines)")


if __name__ == "__main__":
    main()
