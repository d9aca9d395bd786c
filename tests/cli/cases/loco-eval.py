"""Cases for loco-eval: --json metrics of a classifier (a zero logreg has loss ln(classes)) and of
a GPT (every token after the first predicted once), the plain-text table, --sample (greedy
deterministic, seeded sampling), and refusals."""

import json
import math

from clitest import Case

MAKE_CSV = ("python3 -c \"print('a,b,c,label'); "
            "[print(f'{(i % 7) / 7},{(i % 5) / 5},{(i % 3) / 3},{i % 4}') for i in range(40)]\" > d.csv && "
            "loco-shard -q --source csv --input d.csv --label-column label --shards 1 -o s")
ROWS = "{tmp}/s-00001-of-00001.h5"
LOGREG = "loco-init --config '{\"arch\":\"logreg\",\"features\":3,\"classes\":4}' -o m.h5"
# 100 bytes of text in one shard.
MAKE_TEXT = ("python3 -c \"import sys; sys.stdout.buffer.write(bytes(97 + i % 26 for i in range(100)))\" > t.txt && "
             "loco-shard -q --source text --input t.txt --shards 1 -o t")
TEXT = "{tmp}/t-00001-of-00001.h5"
GPT = ("loco-init --seed 1 --config "
       "'{\"arch\":\"gpt\",\"vocab\":256,\"ctx\":16,\"d_model\":16,\"layers\":1,\"heads\":2}' -o g.h5")


MLP = "loco-init --seed {s} --config '{{\"arch\":\"mlp\",\"sizes\":[3,5,4]}}' -o mlp{s}.h5"
MLPS = [MLP.format(s=s) for s in (1, 2, 3)]


def consensus_json(ctx, r):
    """Against numpy in float64: (1/n) sum_i ||theta_i - mean||^2 over every tensor."""
    import h5py
    import numpy as np
    models = []
    for s in (1, 2, 3):
        with h5py.File(ctx.expand(f"{{tmp}}/mlp{s}.h5"), "r") as f:
            models.append(np.concatenate([np.asarray(f["tensors"][k][()], dtype=np.float64).ravel()
                                          for k in f["tensors"]]))
    x = np.stack(models)
    want = ((x - x.mean(axis=0)) ** 2).sum() / len(models)
    j = r.json()
    assert j["models"] == 3 and j["parameters"] == 3 * 5 + 5 + 5 * 4 + 4, j
    # Welford against two passes: a few roundings per element, relative ~ 1e-15.
    assert want > 0 and math.isclose(j["consensus_distance_sq"], want, rel_tol=1e-12), (j, want)
    assert math.isclose(j["consensus_distance"], math.sqrt(want), rel_tol=1e-12), j


def classifier_json(ctx, r):
    j = r.json()
    assert set(j) == {"loss", "count", "accuracy", "model", "data"}, j
    # All logits are 0: every example's loss is ln 4 exactly in double, and class 0 (labels i mod
    # 4 = 0) is predicted; the mean differs from ln 4 only by the rounding of a 40-term sum.
    assert abs(j["loss"] - math.log(4)) <= 40 * 2.0**-52 * math.log(4) and j["count"] == 40 and j["accuracy"] == 0.25, j
    assert j["model"].endswith("m.h5") and j["data"].endswith("s-00001-of-00001.h5"), j


def gpt_json(ctx, r, extra=()):
    j = r.json()
    assert set(j) - set(extra) == {"loss", "count", "accuracy", "perplexity", "bits_per_byte", "model", "data"}, j
    assert j["count"] == 99, j  # every token after the first
    assert math.isclose(j["perplexity"], math.exp(j["loss"]), rel_tol=1e-12), j
    assert math.isclose(j["bits_per_byte"], j["loss"] / math.log(2), rel_tol=1e-12), j
    # A fresh GPT (weights N(0, 0.02)) is close to uniform over 256 bytes.
    assert abs(j["loss"] - math.log(256)) < 0.1, j


def batch_invariant(ctx, r):
    a = r.json()
    b = ctx.json("loco-eval", "--model", "{tmp}/g.h5", "--data", TEXT, "--json", "--batch", "64")
    assert a["count"] == b["count"] and math.isclose(a["loss"], b["loss"], rel_tol=1e-12), (a, b)


def sample_len(prompt, n):
    def check(ctx, r):
        out = r.stdout_bytes
        assert out.startswith(prompt.encode()) and len(out) == len(prompt) + n + 1 and out.endswith(b"\n"), out
        again = ctx.run(*(["loco-eval"] + [ctx.expand(a) for a in r.command.split()[1:]]))
        assert again.stdout_bytes == out, "the same seed gave another sample"
    return check


def seeds_differ(ctx, r):
    other = ctx.run("loco-eval", "--model", "{tmp}/g.h5", "--sample", "64", "--temperature", "1", "--seed", "2",
                    "--prompt", "ab")
    assert other.code == 0 and other.stdout_bytes != r.stdout_bytes, "seeds 1 and 2 gave the same sample"


def sample_in_json(ctx, r):
    gpt_json(ctx, r, extra=("sample",))
    s = r.json()["sample"]  # the default prompt "\n" and 5 bytes (invalid UTF-8 shown as U+FFFD)
    assert s.startswith("\n") and 2 <= len(s) <= 6, repr(s)


CASES = [
    Case("--json for a classifier", ["--model", "{tmp}/m.h5", "--data", ROWS, "--json"], setup=[MAKE_CSV, LOGREG],
         check=classifier_json),
    Case("--json for a GPT", ["--model", "{tmp}/g.h5", "--data", TEXT, "--json", "--batch", "2"],
         setup=[MAKE_TEXT, GPT], check=lambda ctx, r: (gpt_json(ctx, r), batch_invariant(ctx, r))),
    Case("a plain table without --json", ["--model", "{tmp}/m.h5", "--data", ROWS], setup=[MAKE_CSV, LOGREG],
         stdout_re=[r"^loss +1\.386294", r"^count +40$", r"^accuracy +0\.25$"]),
    Case("--sample N prints the prompt and N bytes (greedy)",
         ["--model", "{tmp}/g.h5", "--sample", "20", "--temperature", "0", "--prompt", "abc"], setup=[GPT],
         check=sample_len("abc", 20)),
    Case("temperature sampling follows --seed",
         ["--model", "{tmp}/g.h5", "--sample", "64", "--temperature", "1", "--seed", "1", "--prompt", "ab"],
         setup=[GPT], check=seeds_differ),
    Case("--sample with --json", ["--model", "{tmp}/g.h5", "--sample", "5", "--json", "--data", TEXT],
         setup=[MAKE_TEXT, GPT], check=sample_in_json),

    Case("--consensus against numpy", ["--consensus", "--json", "{tmp}/mlp1.h5", "{tmp}/mlp2.h5", "{tmp}/mlp3.h5"],
         setup=MLPS, check=consensus_json),
    Case("--consensus of identical models is 0", ["--consensus", "{tmp}/mlp1.h5", "{tmp}/copy.h5"],
         setup=MLPS[:1] + ["cp mlp1.h5 copy.h5"], stdout_re=[r"^consensus_distance_sq +0\.0$", r"^models +2$"]),

    # Refusals.
    Case("--consensus with --model", ["--consensus", "--model", "{tmp}/mlp1.h5", "{tmp}/mlp2.h5"], setup=MLPS, code=2,
         stderr="--consensus takes MODEL files only"),
    Case("--consensus without models", ["--consensus"], code=2, stderr="at least one model"),
    Case("MODEL files without --consensus", ["--model", "{tmp}/mlp1.h5", "{tmp}/mlp2.h5"], setup=MLPS, code=2,
         stderr="for --consensus"),
    Case("--consensus of models of other architectures", ["--consensus", "{tmp}/mlp1.h5", "{tmp}/m.h5"],
         setup=MLPS[:1] + [LOGREG], code=4, stderr="m.h5"),
    Case("neither --data nor --sample", ["--model", "{tmp}/m.h5"], setup=[LOGREG], code=2, stderr="--data"),
    Case("--sample needs a GPT", ["--model", "{tmp}/m.h5", "--sample", "3"], setup=[LOGREG], code=2, stderr="logreg"),
    Case("a missing model", ["--model", "{tmp}/none.h5", "--data", ROWS], setup=[MAKE_CSV], code=3,
         stderr_re=r"\Aloco-eval: error: {tmp}/none.h5"),
    Case("data that does not fit the model", ["--model", "{tmp}/g.h5", "--data", ROWS], setup=[MAKE_CSV, GPT], code=4,
         stderr_re=r"\Aloco-eval: error: .*s-00001-of-00001.h5 holds labelled rows"),
    Case("a data file where the model belongs", ["--model", ROWS, "--data", ROWS], setup=[MAKE_CSV], code=4,
         stderr_re=r"\Aloco-eval: error: .*s-00001-of-00001.h5.*data"),
]
