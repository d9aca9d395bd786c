"""Cases for loco-gossip: hand-computed mixes (ring, one-peer exponential), neighbours found by
their `node` attribute in any order or by position, /state kept local, --describe (text and
JSON, spectral gap of a ring in closed form), --schedule, and every refusal with its exit code."""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import fixtures  # noqa: E402
from clitest import Case  # noqa: E402

# Each case's inputs: this file run as a script writes them into the case's folder.
INPUTS = f"/usr/bin/python3 -B {Path(__file__).resolve()} ."
CFG = '{"arch": "test"}'


def model(d, name, w, node=None, rnd=3, cfg=CFG, state=None):
    attrs = {"model_config": cfg}
    if rnd is not None:
        attrs["round"] = np.int64(rnd)
    if node is not None:
        attrs["node"] = np.int64(node)
    groups = {"state/momentum": {"w": np.full(np.shape(w), 9, dtype=np.float32)}} if state else None
    fixtures.write_loco(d / name, {"w": np.asarray(w, dtype=np.float32), "n": np.array([node or 0], dtype=np.int64)},
                        attrs, groups=groups)


def write_inputs(folder):
    d = Path(folder)
    model(d, "n0.h5", [[1, 2], [3, 4]], 0)
    model(d, "n1.h5", [[4, 8], [-3, 0.25]], 1, state=True)
    model(d, "n2.h5", [[7, -1], [9, 1]], 2)
    model(d, "n3.h5", [[0, 0], [0, 0]], 3)
    model(d, "u0.h5", [[1, 2], [3, 4]])
    model(d, "u2.h5", [[7, -1], [9, 1]])
    model(d, "old.h5", [[1, 1], [1, 1]], 2, rnd=2)
    model(d, "cfg.h5", [[1, 1], [1, 1]], 2, cfg='{"arch": "other"}')
    model(d, "nan.h5", [[1, 1], [1, float("nan")]], 2)
    fixtures.write_loco(d / "delta.h5", {"w": np.zeros((2, 2), dtype=np.float32)}, {"node": np.int64(2)}, kind="delta")


def values(ctx, path, name="w", group="tensors"):
    import h5py
    with h5py.File(ctx.expand(path), "r") as f:
        return f[group][name][()], dict(f.attrs)


def expect(path, want, **attrs):
    def check(ctx, r):
        got, a = values(ctx, path)
        assert np.array_equal(got, np.asarray(want, dtype=np.float32)), f"{got}, expected {want}"
        for k, v in attrs.items():
            assert a.get(k) == v, f"attribute {k}: {a.get(k)!r}, expected {v!r}"
    return check


def ring_mix_checks(ctx, r):
    # Ring of 3: weights 1/3; (1+4+7, 2+8−1, 3−3+9, 4+0.25+1)/3 in double, rounded once.
    expect("{tmp}/m.h5", [[4, 3], [3, 1.75]], node=1, round=3, gossip_topology="ring", gossip_degree=2)(ctx, r)
    state, _ = values(ctx, "{tmp}/m.h5", "w", "state/momentum")
    assert np.array_equal(state, np.full((2, 2), 9, dtype=np.float32)), state  # /state copied, not mixed
    n, _ = values(ctx, "{tmp}/m.h5", "n")
    assert n.tolist() == [1], n  # integers from the own model
    j = r.json()
    assert j["node"] == 1 and j["degree"] == 2 and [w["node"] for w in j["weights"]] == [0, 1, 2], j
    assert all(abs(w["weight"] - 1 / 3) < 1e-15 for w in j["weights"]), j
    assert j["bytes_received"] == 2 * 16, j  # the neighbours' float tensors


def same_as_ring(ctx, r):
    a, _ = values(ctx, "{tmp}/m.h5")
    b, _ = values(ctx, "{tmp}/again.h5")
    assert np.array_equal(a, b), (a, b)


def ring_gap(ctx, r):
    j = r.json()
    want = 1 - (1 / 3 + 2 / 3 * math.cos(2 * math.pi / 8))
    assert abs(j["spectral_gap"] - want) < 1e-13, j
    assert j["rows"][0]["neighbours"] == [1, 7] and j["rows"][0]["weights"] == [1 / 3, 1 / 3], j["rows"][0]
    for row in j["rows"]:
        assert abs(row["self_weight"] + sum(row["weights"]) - 1) < 1e-15, row


def complete_json(ctx, r):
    j = r.json()
    assert abs(j["spectral_gap"] - 1) < 1e-13 and j["symmetric"] and not j["time_varying"], j


def torus_text(ctx, r):
    assert "torus         3 x 4" in r.stdout, r.stdout
    assert "spectral_gap" in r.stdout


def schedule_json(ctx, r):
    j = r.json()
    assert j == {"schedule": "late:from=0.8,period=5,dense_period=1", "rounds": 20,
                 "gossip_rounds": [5, 10, 15, 17, 18, 19, 20]}, j


RING = ["--topology", "ring", "--nodes", "3", "--node", "1"]
CASES = [
    Case("ring of 3: hand-computed mean, /state and integers kept local, JSON summary",
         RING + ["--json", "-o", "{tmp}/m.h5", "n1.h5", "n2.h5", "n0.h5"], setup=[INPUTS], check=ring_mix_checks),
    Case("the order of tagged neighbour files does not matter",
         sh="cd {tmp} && loco-gossip --topology ring --nodes 3 --node 1 -o m.h5 n1.h5 n0.h5 n2.h5 && "
            "loco-gossip --topology ring --nodes 3 --node 1 -o again.h5 n1.h5 n2.h5 n0.h5",
         setup=[INPUTS], check=same_as_ring),
    Case("untagged neighbours are taken in the order of the neighbour list",
         ["--topology", "ring", "--nodes", "3", "--node", "1", "-o", "{tmp}/u.h5", "n1.h5", "u0.h5", "u2.h5"],
         setup=[INPUTS], check=expect("{tmp}/u.h5", [[4, 3], [3, 1.75]], node=1)),
    Case("one-peer exponential, round 1 on 4 nodes: node 0 averages with node 2",
         ["--topology", "one-peer-exponential", "--nodes", "4", "--node", "0", "--round", "1", "-o", "{tmp}/p.h5",
          "n0.h5", "n2.h5"], setup=[INPUTS], check=expect("{tmp}/p.h5", [[4, 0.5], [6, 2.5]], gossip_round=1)),
    Case("to stdout", sh="cd {tmp} && loco-gossip --topology ring --nodes 2 --node 0 -o - n0.h5 n1.h5 | loco-inspect -",
         setup=[INPUTS], stdout="<stdin>"),
    Case("--describe: ring of 8 in JSON, spectral gap in closed form",
         ["--topology", "ring", "--nodes", "8", "--describe", "--json"], check=ring_gap),
    Case("--describe: complete graph has gap 1", ["--topology", "complete", "--nodes", "6", "--describe", "--json"],
         check=complete_json),
    Case("--describe: 12-node torus is 3 x 4", ["--topology", "torus", "--nodes", "12", "--describe"], check=torus_text),
    Case("--describe: a seeded random regular graph", ["--topology", "random-regular:d=3", "--nodes", "10", "--seed", "5",
                                                        "--describe"],
         stdout_re=[r"^node 0 +self 0\.25  neighbours \d+:0\.25 \d+:0\.25 \d+:0\.25$"]),
    Case("--schedule lists the gossip rounds", ["--schedule", "late:from=0.8,period=5", "--rounds", "20"],
         stdout="5 10 15 17 18 19 20\n"),
    Case("--schedule --json", ["--schedule", "late:from=0.8,period=5", "--rounds", "20", "--json"], check=schedule_json),

    # Refusals.
    Case("too few neighbour models", RING + ["-o", "{tmp}/o.h5", "n1.h5", "n0.h5"], setup=[INPUTS], code=2,
         stderr="2 neighbours (0, 2), 1 neighbour model given", absent="{tmp}/o.h5"),
    Case("a model from a node that is not a neighbour",
         ["--topology", "ring", "--nodes", "5", "--node", "1", "-o", "{tmp}/o.h5", "n1.h5", "n0.h5", "n3.h5"],
         setup=[INPUTS], code=4, stderr_re=r"n3\.h5 is node 3's model, which is not a neighbour of node 1 .*neighbours 0, 2",
         absent="{tmp}/o.h5"),
    Case("the own model of another node", RING + ["-o", "{tmp}/o.h5", "n0.h5", "n1.h5", "n2.h5"], setup=[INPUTS], code=4,
         stderr="expected node 1's"),
    Case("a model of another round", RING + ["-o", "{tmp}/o.h5", "n1.h5", "n0.h5", "old.h5"], setup=[INPUTS], code=4,
         stderr_re=r"old\.h5 is of round 2 but .*n1\.h5 \(node 1's own model\) of round 3", absent="{tmp}/o.h5"),
    Case("another model config", RING + ["-o", "{tmp}/o.h5", "n1.h5", "n0.h5", "cfg.h5"], setup=[INPUTS], code=4,
         stderr="cfg.h5", absent="{tmp}/o.h5"),
    Case("tagged and untagged neighbours mixed", RING + ["-o", "{tmp}/o.h5", "n1.h5", "n0.h5", "u2.h5"], setup=[INPUTS],
         code=4, stderr="either all do"),
    Case("a delta where a model belongs", RING + ["-o", "{tmp}/o.h5", "n1.h5", "n0.h5", "delta.h5"], setup=[INPUTS],
         code=4, stderr="delta"),
    Case("a non-finite mix", RING + ["-o", "{tmp}/o.h5", "n1.h5", "n0.h5", "nan.h5"], setup=[INPUTS], code=5,
         stderr="not finite", absent="{tmp}/o.h5"),
    Case("the output is an input", RING + ["-o", "{tmp}/n1.h5", "n1.h5", "n0.h5", "n2.h5"], setup=[INPUTS], code=2),
    Case("--node outside 0..N-1", ["--topology", "ring", "--nodes", "3", "--node", "3", "-o", "{tmp}/o.h5", "n1.h5"],
         setup=[INPUTS], code=2, stderr="outside 0..2"),
    Case("no --nodes", ["--topology", "ring", "--node", "0", "-o", "{tmp}/o.h5", "n0.h5"], code=2, stderr="--nodes"),
    Case("no --output", RING + ["n1.h5", "n0.h5", "n2.h5"], code=2, stderr="--output"),
    Case("an unknown topology", ["--topology", "star", "--nodes", "4", "--describe"], code=2, stderr="'star'"),
    Case("an impossible regular graph", ["--topology", "random-regular:d=3", "--nodes", "5", "--describe"], code=2,
         stderr="N·d even"),
    Case("--schedule without --rounds", ["--schedule", "every"], code=2, stderr="--rounds"),
    Case("an unknown schedule", ["--schedule", "often", "--rounds", "3"], code=2, stderr="'often'"),
    # A hostile --nodes is refused before anything is built (it ran out of memory: issue 19).
    Case("a complete graph too large to build", ["--topology", "complete", "--nodes", "1000000000", "--node", "1",
                                                 "-o", "{tmp}/o.h5", "n1.h5", "n0.h5", "n2.h5"], setup=[INPUTS],
         code=2, stderr="about 5e+17 edges or node pairs, more than loco builds", absent="{tmp}/o.h5"),
    Case("an Erdos-Renyi graph with too many node pairs", ["--topology", "erdos-renyi:p=0.5", "--nodes", "100000",
                                                           "--node", "1", "-o", "{tmp}/o.h5", "n1.h5", "n0.h5"],
         setup=[INPUTS], code=2, stderr="node pairs", absent="{tmp}/o.h5"),
    Case("a spectral gap of too many nodes", ["--topology", "ring", "--nodes", "5000", "--describe"], code=2,
         stderr="for at most 2048 nodes"),
    Case("a missing model", RING + ["-o", "{tmp}/o.h5", "{tmp}/none.h5", "n0.h5", "n2.h5"], code=3,
         stderr_re=r"\Aloco-gossip: error: {tmp}/none.h5"),
]

if __name__ == "__main__":
    write_inputs(sys.argv[1])
