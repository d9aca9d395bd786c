"""Cases for loco-worker: end to end on shards loco-shard makes from a small CSV and a text file
(delta attributes, state, --metrics JSON lines, thread-count invariance, state carried across
runs) and the exit codes of its refusals (missing model 3; wrong kind, mismatched shard, state of
another worker 4; non-finite loss 5 with nothing written)."""

import json

import h5py
import numpy as np

from clitest import Case

# 40 rows of 3 features in [0, 1) and a label in 0..3; loco-shard splits them into 2 shards of 20.
MAKE_CSV = ("python3 -c \"print('a,b,c,label'); "
            "[print(f'{(i % 7) / 7},{(i % 5) / 5},{(i % 3) / 3},{i % 4}') for i in range(40)]\" > d.csv")
SHARD_CSV = "loco-shard -q --source csv --input d.csv --label-column label --shards 2 -o s"
LOGREG = "loco-init --config '{\"arch\":\"logreg\",\"features\":3,\"classes\":4}' -o g.h5"
MLP = "loco-init --seed 2 --config '{\"arch\":\"mlp\",\"sizes\":[3,16,4]}' -o g.h5"
ROWS = [MAKE_CSV, SHARD_CSV]
S1, S2 = "{tmp}/s-00001-of-00002.h5", "{tmp}/s-00002-of-00002.h5"
# 600 bytes of text (byte i = 32 + i mod 60, so tokens < 92) in one shard.
MAKE_TEXT = ("python3 -c \"import sys; sys.stdout.buffer.write(bytes(32 + i % 60 for i in range(600)))\" > t.txt && "
             "loco-shard -q --source text --input t.txt --shards 1 -o t")
GPT = ("loco-init --seed 1 --config "
       "'{\"arch\":\"gpt\",\"vocab\":256,\"ctx\":16,\"d_model\":16,\"layers\":1,\"heads\":2}' -o gpt.h5")
TEXT = "{tmp}/t-00001-of-00001.h5"
RUN = ["--model", "{tmp}/g.h5", "--data", S1, "--steps", "3", "--batch", "4", "--state", "{tmp}/st.h5", "-o",
       "{tmp}/d.h5"]


def attrs(path):
    with h5py.File(path, "r") as f:
        return dict(f.attrs)


def tensors(path, group="tensors"):
    with h5py.File(path, "r") as f:
        return {k: f[group][k][()] for k in f[group]}


def delta_attrs(worker, samples, step, model="{tmp}/g.h5"):
    def check(ctx, r):
        a = attrs(ctx.expand("{tmp}/d.h5"))
        assert a["kind"] == "delta" and a["worker"] == worker and a["samples"] == samples, a
        assert a["round"] == 0 and a["step"] == step and a["inner_steps"] == 3, a
        assert np.isfinite([a["loss_first"], a["loss_last"], a["loss_mean"]]).all(), a
        assert a["inner_optimizer"].startswith("adamw"), a["inner_optimizer"]
        cs = ctx.json("loco-inspect", "--checksum", "--json", model)["tensors_checksum"]
        assert a["base_checksum"] == cs, (a["base_checksum"], cs)
        assert json.loads(a["model_config"]) == json.loads(attrs(ctx.expand(model))["model_config"])
        s = attrs(ctx.expand("{tmp}/st.h5"))
        assert s["kind"] == "state" and s["worker"] == worker and s["step"] == step, s
        with h5py.File(ctx.expand("{tmp}/st.h5"), "r") as f:
            assert set(f["state"]) == {"exp_avg", "exp_avg_sq"}, list(f["state"])
            assert f["state"].attrs["step"] == step
        d = tensors(ctx.expand("{tmp}/d.h5"))
        assert set(d) == set(tensors(ctx.expand(model))) and any(v.any() for v in d.values()), d
    return check


def metrics_lines(path, n, worker):
    def check(ctx, r):
        text = r.stdout if path == "-" else open(ctx.expand(path)).read()
        lines = [json.loads(line) for line in text.splitlines()]
        assert [m["step"] for m in lines] == list(range(n)), lines
        for m in lines:
            assert m["worker"] == worker and m["round"] == 0 and np.isfinite(m["loss"]) and m["lr"] > 0, m
            assert m["grad_norm"] >= 0, m
    return check


def same_delta(a, b):
    def check(ctx, r):
        da, db = tensors(ctx.expand(a)), tensors(ctx.expand(b))
        assert all(da[k].tobytes() == db[k].tobytes() for k in da), f"{a} and {b} differ"
    return check


def two_runs_carry_the_state(ctx, r):
    # The second run continues at step 3: its delta is relative to the same global model but
    # starts from fresh parameters with the carried moments, so it differs from the first one.
    a = attrs(ctx.expand("{tmp}/d.h5"))
    assert a["step"] == 6 and attrs(ctx.expand("{tmp}/st.h5"))["step"] == 6, a
    d1, d2 = tensors(ctx.expand("{tmp}/d1.h5")), tensors(ctx.expand("{tmp}/d.h5"))
    assert any(d1[k].tobytes() != d2[k].tobytes() for k in d1), "the carried state changed nothing"


def optimizer_is(prefix):
    def check(ctx, r):
        spec = attrs(ctx.expand("{tmp}/d.h5"))["inner_optimizer"]
        assert spec.startswith(prefix), spec
    return check


# Multiplies every tensor of g.h5 by 1e30 (finite, but the logits overflow).
HUGE = ("/usr/bin/python3 -c \"import h5py; f = h5py.File('g.h5', 'r+'); "
        "[f['tensors'][k].write_direct(f['tensors'][k][()] * 1e30) for k in f['tensors']]\"")

CASES = [
    Case("end to end on a CSV shard", RUN + ["--metrics", "{tmp}/m.jsonl"], setup=ROWS + [LOGREG],
         check=lambda ctx, r: (delta_attrs(1, 12, 3)(ctx, r), metrics_lines("{tmp}/m.jsonl", 3, 1)(ctx, r))),
    Case("--metrics - prints JSON lines on stdout", RUN + ["--metrics", "-", "--worker", "5"], setup=ROWS + [MLP],
         check=metrics_lines("-", 3, 5)),
    Case("a GPT on a text shard", ["--model", "{tmp}/gpt.h5", "--data", TEXT, "--steps", "3", "--batch", "2",
                                   "--state", "{tmp}/st.h5", "-o", "{tmp}/d.h5"],
         setup=[MAKE_TEXT, GPT], check=delta_attrs(1, 3 * 2 * 16, 3, model="{tmp}/gpt.h5")),
    Case("--threads 1 and 2 give the same delta", RUN + ["--threads", "2"],
         setup=ROWS + [MLP, "loco-worker --threads 1 --model g.h5 --data s-00001-of-00002.h5 --steps 3 --batch 4 "
                            "--state st1.h5 -o d1.h5"],
         check=same_delta("{tmp}/d1.h5", "{tmp}/d.h5")),
    Case("the state carries across runs", RUN, setup=ROWS + [
        MLP, "loco-worker --model g.h5 --data s-00001-of-00002.h5 --steps 3 --batch 4 --state st.h5 -o d1.h5"],
         check=two_runs_carry_the_state),
    Case("sgd with --lr", RUN[:-4] + ["--optimizer", "sgd", "--lr", "0.5", "-o", "{tmp}/d.h5"],
         setup=ROWS + [LOGREG],
         check=optimizer_is("sgd:lr=0.5")),

    # Refusals: nothing is written.
    Case("a missing model", RUN, setup=ROWS, code=3, stderr_re=r"\Aloco-worker: error: {tmp}/g.h5",
         absent=["{tmp}/d.h5", "{tmp}/st.h5"]),
    Case("a data file where the model belongs", RUN[:1] + [S2] + RUN[2:], setup=ROWS, code=4,
         stderr_re=r"\Aloco-worker: error: .*s-00002-of-00002.h5.*data", absent=["{tmp}/d.h5", "{tmp}/st.h5"]),
    Case("a shard with another feature count", RUN, code=4,
         setup=ROWS + ["loco-init --config '{\"arch\":\"logreg\",\"features\":5,\"classes\":4}' -o g.h5"],
         stderr_re=r"\Aloco-worker: error: .*s-00001-of-00002.h5: 3 features", absent=["{tmp}/d.h5", "{tmp}/st.h5"]),
    Case("a text shard for a classifier", RUN[:2] + ["--data", TEXT] + RUN[4:], code=4, setup=[MAKE_TEXT, LOGREG],
         stderr_re=r"\Aloco-worker: error: .*t-00001-of-00001.h5.*tokens", absent=["{tmp}/d.h5"]),
    Case("tokens outside a small vocabulary", ["--model", "{tmp}/gpt.h5", "--data", TEXT, "--steps", "1", "-o",
                                               "{tmp}/d.h5"],
         setup=[MAKE_TEXT, GPT.replace('"vocab":256', '"vocab":64')], code=4,
         stderr_re=r"\Aloco-worker: error: .*t-00001-of-00001.h5: token id 91 is outside the vocabulary",
         absent=["{tmp}/d.h5"]),
    Case("the state of another worker", RUN[:2] + ["--data", S2] + RUN[4:], code=4, setup=ROWS + [LOGREG] + [
        "loco-worker --model g.h5 --data s-00001-of-00002.h5 --steps 1 --state st.h5 -o d1.h5"],
         stderr_re=r"\Aloco-worker: error: {tmp}/st.h5: state of worker 1, this is worker 2",
         unchanged="{tmp}/st.h5", absent="{tmp}/d.h5"),
    Case("a non-finite loss exits 5 and writes nothing", RUN, code=5, setup=ROWS + [MLP, HUGE],
         stderr_re=r"\Aloco-worker: error: .*loss is -?(nan|inf)", absent=["{tmp}/d.h5", "{tmp}/st.h5"]),
    Case("--steps 0", RUN[:5] + ["0"] + RUN[6:], setup=ROWS + [LOGREG], code=2, absent="{tmp}/d.h5"),
    Case("the delta may not replace the model", RUN[:-1] + ["{tmp}/g.h5"], setup=ROWS + [LOGREG], code=2,
         unchanged="{tmp}/g.h5"),
]


# Federated options: FedProx (--prox-mu) and SCAFFOLD (--scaffold-control, --control-delta).
SGD = RUN[:-4] + ["--optimizer", "sgd:lr=0.1", "--state", "{tmp}/st.h5", "-o", "{tmp}/d.h5"]
CFILE = "loco-init --seed 7 --config '{\"arch\":\"mlp\",\"sizes\":[3,16,4]}' -o c.h5"
SCAF = SGD + ["--scaffold-control", "{tmp}/c.h5", "--control-delta", "{tmp}/dc.h5"]


def scaffold_files(ctx, r):
    a = attrs(ctx.expand("{tmp}/dc.h5"))
    cs = ctx.json("loco-inspect", "--checksum", "--json", "{tmp}/c.h5")["tensors_checksum"]
    assert a["kind"] == "delta" and a["control"] == "scaffold" and a["base_checksum"] == cs, a
    assert a["worker"] == 1 and a["samples"] == 12 and abs(a["lr_sum"] - 0.3) < 1e-12, a
    with h5py.File(ctx.expand("{tmp}/st.h5"), "r") as f:
        ci = {k: f["state/scaffold_control"][k][()] for k in f["state/scaffold_control"]}
    dc = tensors(ctx.expand("{tmp}/dc.h5"))
    # c_i started at zero, so the control delta is -c_i+ (exactly: 0 - x rounds to -x).
    assert set(ci) == set(dc) and all((dc[k] == -ci[k]).all() for k in ci), "dc is not c_i - c_i+"
    assert any(v.any() for v in ci.values()), "c_i+ is zero"


def prox_recorded(ctx, r):
    assert attrs(ctx.expand("{tmp}/d.h5"))["prox_mu"] == 0.5


CASES += [
    Case("--prox-mu 0 gives the same delta as no proximal term", SGD + ["--prox-mu", "0"],
         setup=ROWS + [MLP, "loco-worker --model g.h5 --data s-00001-of-00002.h5 --steps 3 --batch 4 "
                            "--optimizer sgd:lr=0.1 -o d1.h5"],
         check=same_delta("{tmp}/d1.h5", "{tmp}/d.h5")),
    Case("--prox-mu is recorded in the delta", SGD + ["--prox-mu", "0.5"], setup=ROWS + [MLP], check=prox_recorded),
    Case("SCAFFOLD writes the control delta against the c file and keeps c_i in the state", SCAF,
         setup=ROWS + [MLP, CFILE], check=scaffold_files),
    Case("SCAFFOLD needs sgd", [("adamw" if a == "sgd:lr=0.1" else a) for a in SCAF], setup=ROWS + [MLP, CFILE], code=2,
         stderr_re=r"\Aloco-worker: error: --scaffold-control needs the sgd inner optimizer",
         absent=["{tmp}/d.h5", "{tmp}/dc.h5", "{tmp}/st.h5"]),
    Case("--scaffold-control without --control-delta", SCAF[:-2], setup=ROWS + [MLP, CFILE], code=2,
         stderr_re=r"--control-delta", absent=["{tmp}/d.h5", "{tmp}/st.h5"]),
    Case("a control variate of another model", SCAF, code=4,
         setup=ROWS + [MLP, CFILE.replace("[3,16,4]", "[3,8,4]")],
         stderr_re=r"\Aloco-worker: error: {tmp}/c.h5: control variate of another model",
         absent=["{tmp}/d.h5", "{tmp}/dc.h5", "{tmp}/st.h5"]),
    Case("a negative --prox-mu", SGD + ["--prox-mu", "-1"], setup=ROWS + [MLP], code=2, absent="{tmp}/d.h5"),
]


# DeMo (--optimizer demo): one step, the compressed momentum as a dct_topk 2-D delta, δ in the state.
DEMO = ["--model", "{tmp}/gpt.h5", "--data", TEXT, "--optimizer", "demo:lr=0.01,chunk=8,k=4", "--steps", "1",
        "--batch", "2", "--state", "{tmp}/st.h5", "-o", "{tmp}/d.h5"]


def demo_files(ctx, r):
    a = attrs(ctx.expand("{tmp}/d.h5"))
    assert a["kind"] == "compressed" and a["source_kind"] == "delta", a
    assert a["codec"] == "dct_topk:chunk=8,k=4,tile=2d" and a["lr"] == 0.01 and a["step"] == 1, a
    assert 0 < a["payload_bytes"] < a["raw_bytes"], a
    with h5py.File(ctx.expand("{tmp}/st.h5"), "r") as f:
        assert list(f["state"]) == ["demo_delta"] and f["state"].attrs["step"] == 1, list(f["state"])
    # Decompressed, it is a delta loco-aggregate takes.
    ctx.run("loco-decompress", "{tmp}/d.h5", "-o", "{tmp}/dense.h5")
    assert attrs(ctx.expand("{tmp}/dense.h5"))["kind"] == "delta"


CASES += [
    Case("--optimizer demo writes the compressed momentum and keeps delta in the state", DEMO,
         setup=[MAKE_TEXT, GPT], check=demo_files),
    Case("--optimizer demo needs --steps 1", DEMO[:7] + ["2"] + DEMO[8:], setup=[MAKE_TEXT, GPT], code=2,
         stderr_re=r"\Aloco-worker: error: --optimizer demo exchanges every step: give --steps 1",
         absent=["{tmp}/d.h5", "{tmp}/st.h5"]),
    Case("--optimizer demo with a bad option", DEMO[:5] + ["demo:beta=2"] + DEMO[6:], setup=[MAKE_TEXT, GPT], code=2,
         stderr_re=r"beta=2 is not in \(0, 1\]", absent="{tmp}/d.h5"),
]

# Issue 19: every path option is checked against the others before anything is read or written,
# and no numeric option takes NaN or an infinity.
FIRST_RUN = "loco-worker --model g.h5 --data s-00001-of-00002.h5 --steps 1 --batch 4 --state st.h5 -o d1.h5"
CASES += [
    Case("--state and -o the same file is refused before anything is written", RUN[:-1] + ["{tmp}/st.h5"],
         setup=ROWS + [LOGREG, FIRST_RUN], code=2, unchanged=["{tmp}/st.h5", "{tmp}/g.h5"],
         stderr_re=r"\Aloco-worker: error: --output {tmp}/st.h5 and --state {tmp}/st.h5 are the same file"),
    Case("--save-local may not replace the model", RUN + ["--save-local", "{tmp}/g.h5"], setup=ROWS + [LOGREG],
         code=2, unchanged="{tmp}/g.h5", absent=["{tmp}/d.h5", "{tmp}/st.h5"],
         stderr_re=r"\Aloco-worker: error: output --save-local {tmp}/g.h5 is also an input \(--model {tmp}/g.h5\)"),
    Case("--metrics may not replace the data", RUN + ["--metrics", S1], setup=ROWS + [LOGREG], code=2,
         unchanged=S1, absent="{tmp}/d.h5", stderr="is also an input"),
    Case("--control-delta and --save-local the same file", RUN + ["--save-local", "{tmp}/x.h5", "--control-delta",
                                                                  "{tmp}/x.h5"],
         setup=ROWS + [LOGREG], code=2, absent=["{tmp}/d.h5", "{tmp}/x.h5"], stderr="are the same file"),
    Case("--clip nan is a usage error", RUN + ["--clip", "nan"], setup=ROWS + [LOGREG], code=2,
         stderr_re=r"\Aloco-worker: error: .*--clip: nan is not a finite number", absent="{tmp}/d.h5"),
    Case("an infinite learning rate inside --optimizer is a usage error", RUN + ["--optimizer", "adamw:lr=inf"],
         setup=ROWS + [LOGREG], code=2, stderr="inf in adamw:lr=inf is not a finite number", absent="{tmp}/d.h5"),
    Case("--lr -Infinity is a usage error", RUN + ["--optimizer", "sgd", "--lr", "-Infinity"], setup=ROWS + [LOGREG],
         code=2, stderr="is not a finite number", absent="{tmp}/d.h5"),
]
