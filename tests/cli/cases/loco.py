"""Cases for the `loco` front end: it runs loco-VERB or a pipeline from beside itself, lists what is
installed there (the build tree links the pipelines into libexec/loco like an install), shows a verb's
manual, and refuses what is no verb."""

from clitest import Case

VERBS = ["shard", "init", "worker", "compress", "decompress", "aggregate", "gossip", "merge", "convert", "eval",
         "inspect", "fragment"]

PIPELINES = ["diloco", "streaming-diloco", "baseline", "sparseloco", "demo", "fedavg", "gossip-pipeline", "report"]

CASES = [
    Case("--help lists the verbs", ["--help"], stdout_re=[rf"^  {v} +\S" for v in VERBS], stderr_empty=True),
    Case("runs loco-inspect", ["inspect", "{fx}/model.h5"], stdout="{fx}/model.h5: loco file, kind model",
         stderr_empty=True),
    Case("runs loco-convert with its arguments", ["convert", "--dtype", "f16", "{fx}/floats.h5", "{tmp}/h.h5"],
         listing={"{tmp}": ["h.h5"]}),
    Case("passes the tool's exit code through", ["inspect", "--diff", "{fx}/base.h5", "{fx}/close.h5"], code=1,
         stdout="1 tensors differ"),
    Case("the tool reports errors under its own name", ["inspect", "{fx}/not_loco.h5"], code=4, strict_errors=False,
         stderr_re=r"\Aloco-inspect: error: {fx}/not_loco.h5: [^\n]*\n\Z"),
    Case("passes stdin through", ["inspect", "-"], stdin="{fx}/model.safetensors", stdout="<stdin>: safetensors file"),
    Case("the tool's --version", ["inspect", "--version"], stdout_re=r"\Aloco-inspect {version}\nbuilt for [^\n:]+: [a-z0-9. -]+\n\Z"),
    Case("an unknown verb is a usage error", ["nosuchverb"], code=2, stderr=["unknown verb 'nosuchverb'", "Usage:"]),
    Case("no verb prints usage and exits 2", [], code=2, stderr="Usage: loco", strict_errors=False),
    Case("a path is not a verb", ["../bin/loco-inspect"], code=2, stderr="is not a verb"),
    Case("help is --help", ["help"], stdout_re=r"^  inspect +\S"),
    Case("--list lists the tools and the pipelines with their summaries", ["--list"], stderr_empty=True,
         stdout_re=[r"\ATools:\n", r"^Pipelines:$"] + [rf"^  {v} +[A-Z]" for v in VERBS + PIPELINES]),
    Case("runs a pipeline", ["diloco", "--help"], stdout_re=r"\AUsage: loco diloco --data", stderr_empty=True),
    Case("a pipeline named like a tool is NAME-pipeline", ["gossip-pipeline", "--help"],
         stdout_re=r"\AUsage: loco gossip-pipeline "),
    Case("help VERB shows the manual", ["help", "inspect"], requires="man", stdout="loco-inspect",
         stdout_re=r"^DESCRIPTION$", env={"MANPAGER": "cat", "PAGER": "cat"}),
    Case("help PIPELINE shows its manual (section 7)", ["help", "gossip-pipeline"], requires="man",
         stdout_re=r"^ +loco-gossip - decentralized", env={"MANPAGER": "cat", "PAGER": "cat"}),
    Case("help VERB without man is VERB --help", ["help", "inspect"], env={"PATH": "/nonexistent"},
         stdout_re=r"\AUsage: loco-inspect "),
]
