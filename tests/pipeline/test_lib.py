#!/usr/bin/python3
"""Unit tests of the pipelines' Python modules (scripts/lib/*.py): the federated client sampler and
its failure simulation, the records of fedavg and gossip rounds, metrics.jsonl, the default
schedules. Every expectation is computed by hand or from the definition in the module's docstring.

Usage: test_lib.py [-v]      (CTest pipeline.lib; Debian's /usr/bin/python3, standard library)
"""
import hashlib
import json
import math
import os
import sys
import tempfile
import unittest
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "lib"))
import fedavg  # noqa: E402
import gossip  # noqa: E402
import linkmodel  # noqa: E402
import metrics  # noqa: E402
import schedules  # noqa: E402


def write_json(path, obj):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj) + "\n")


class Sampler(unittest.TestCase):
    def test_hash_is_sha256_prefix(self):
        want = int.from_bytes(hashlib.sha256(b"sample:1:3:0").digest()[:8], "big")
        self.assertEqual(fedavg.h("sample", 1, 3, 0), want)

    def test_sample_size_reads_the_fraction_exactly(self):
        # 0.3 * 10 in binary floating point is 3.0000000000000004: its ceiling would be 4.
        self.assertEqual(fedavg.sample_size(10, "0.3", 1), 3)
        self.assertEqual(fedavg.sample_size(10, "0.1", 2), 2)   # min-fit-clients dominates
        self.assertEqual(fedavg.sample_size(3, "1.0", 5), 3)    # never more than C
        self.assertEqual(fedavg.sample_size(7, "0.5", 1), 4)    # ceil(3.5)

    def test_one_of_two_follows_the_first_hash(self):
        # C = 2, k = 1: swap a[0] with a[0 + h(sample, seed, R, 0) mod 2].
        for r in range(1, 6):
            p = fedavg.plan("9", r, 2, "0.5", 1, "0", "0")
            self.assertEqual(p["sampled"], [fedavg.h("sample", "9", r, 0) % 2])

    def test_plan_properties(self):
        for r in range(1, 20):
            p = fedavg.plan("3", r, 10, "0.3", 2, "0.6", "0.25")
            self.assertEqual(p["k"], 3)
            self.assertEqual(p["sampled"], sorted(set(p["sampled"])))
            self.assertEqual(len(p["sampled"]), 3)
            self.assertTrue(all(0 <= i < 10 for i in p["sampled"]))
            self.assertEqual(p["trained"], [i for i in p["sampled"] if i not in p["dropped"]])
            self.assertEqual(p["quorum"], 2)  # ceil(0.6 * 3)
            for i in p["sampled"]:
                fails = Fraction(fedavg.h("drop", "3", r, i), 2 ** 64) < Fraction(1, 4)
                self.assertEqual(i in p["dropped"], fails)
            self.assertEqual(p, fedavg.plan("3", r, 10, "0.3", 2, "0.6", "0.25"), "deterministic")

    def test_drop_rate_bounds_and_quorum_floor(self):
        none = fedavg.plan("1", 4, 6, "0.5", 2, "0", "0")
        every = fedavg.plan("1", 4, 6, "0.5", 2, "0", "1")
        self.assertEqual((none["dropped"], none["quorum"]), ([], 1))
        self.assertEqual((every["dropped"], every["trained"]), (every["sampled"], []))

    def test_all_clients_sampled_when_k_is_c(self):
        self.assertEqual(fedavg.plan("5", 2, 4, "1.0", 2, "1", "0")["sampled"], [0, 1, 2, 3])

    def test_previous_round(self):
        trained = {1: [0, 2], 2: [1], 3: [2]}
        plan_of = lambda q: {"trained": trained[q]}  # noqa: E731
        self.assertEqual(fedavg.previous_round(2, 4, plan_of), 3)
        self.assertEqual(fedavg.previous_round(0, 4, plan_of), 1)
        self.assertEqual(fedavg.previous_round(1, 2, plan_of), 0)  # round 1 did not train it
        self.assertEqual(fedavg.previous_round(3, 4, plan_of), 0)


class Records(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def steps(self, losses):
        path = self.root / "steps.jsonl"
        path.write_text("".join(json.dumps({"loss": x}) + "\n" for x in losses) + "\n")
        return path

    def test_client_and_node_records(self):
        s = self.steps([3.0, 1.0, 2.0])
        rec = fedavg.client_record(s, 2, 5, 1.5, 3)
        self.assertEqual(rec, {"round": 2, "client": 5, "dropped": False, "steps": 3, "train_loss": 2.0,
                               "train_loss_last": 2.0, "wall_seconds": 1.5})
        rec = gossip.train_record(s, 1, 0, 0.25)
        self.assertEqual((rec["node"], rec["train_loss"], rec["train_loss_last"]), (0, 2.0, 2.0))
        # A worker command need not write its losses: the records say None, not a crash.
        empty = self.root / "empty.jsonl"
        empty.write_text("")
        rec = fedavg.client_record(empty, 2, 5, 1.5, 4)
        self.assertEqual((rec["steps"], rec["train_loss"], rec["train_loss_last"]), (4, None, None))
        rec = gossip.train_record(self.root / "absent.jsonl", 1, 0, 0.25)
        self.assertEqual((rec["train_loss"], rec["train_loss_last"]), (None, None))

    def test_fedavg_round_bytes_and_steps(self):
        r = self.root
        write_json(r / "metrics/round-0000.json", {"cum_bytes": 0})
        write_json(r / "rounds/round-0001.json", {"sampled": [0, 1, 4], "dropped": [4], "trained": [0, 1],
                                                  "finished": [0, 1], "quorum": 1, "skipped": False,
                                                  "aggregate_seconds": 0.5})
        write_json(r / "rounds/round-0001.summary.json", {"update_norm": 0.125})
        write_json(r / "clients/round-0001/client-0.json", {"steps": 4, "wall_seconds": 1.0, "train_loss": 1.0})
        write_json(r / "clients/round-0001/client-1.json", {"steps": 6, "wall_seconds": 2.0, "train_loss": 2.0})
        ev = {"loss": 0.7, "accuracy": 0.8}
        for scaffold, per in ((False, 100), (True, 200)):
            rec = fedavg.round_record(r, 1, ev, 0.1, "fedavg", 5, scaffold, 100)
            # 2 clients trained (received the model), 2 finished (sent a delta); SCAFFOLD doubles both.
            self.assertEqual((rec["bytes_received"], rec["bytes_sent"], rec["cum_bytes"]), (2 * per, 2 * per, 4 * per))
            self.assertEqual((rec["local_steps"], rec["cum_local_steps"]), ([4, 6], 10))
            self.assertEqual((rec["train_loss"], rec["update_norm"], rec["clients_sampled"]), (1.5, 0.125, 3))
        rec0 = fedavg.round_record(r, 0, ev, 0.1, "fedavg", 5, False, 100)
        self.assertEqual((rec0["bytes_sent"], rec0["cum_bytes"], rec0["cum_local_steps"]), (0, 0, 0))

    def test_gossip_round(self):
        r, work = self.root, self.root / "work"
        for i, (loss, acc) in enumerate(((1.0, 0.5), (3.0, 0.25))):
            write_json(work / f"local-{i}.json", {"loss": loss, "accuracy": acc})
            write_json(r / f"local/round-0002/node-{i}.json", {"train_loss": 2.0 * (i + 1), "wall_seconds": 1.0})
            write_json(r / f"nodes/round-0002/node-{i}.json", {"bytes_received": 64 * (i + 1)})
        write_json(work / "merged.json", {"loss": 1.5, "accuracy": 0.75})
        write_json(work / "consensus.json", {"consensus_distance_sq": 4.0, "consensus_distance": 2.0})
        write_json(r / "metrics/round-0001.json", {"cum_bytes_received_per_node": 100})
        rec = gossip.round_record(r, work, 2, 2, 5, True, "ring", "every")
        self.assertEqual((rec["local_loss"], rec["local_accuracy"]), (2.0, 0.375))
        self.assertEqual((rec["local_accuracy_min"], rec["local_accuracy_max"]), (0.25, 0.5))
        self.assertEqual((rec["step"], rec["train_loss"], rec["bytes_received_per_node"]), (10, 3.0, 96))
        self.assertEqual(rec["cum_bytes_received_per_node"], 196)

    def test_collect_stops_at_the_first_missing_round(self):
        d = self.root / "metrics"
        d.mkdir()
        (d / "round-0000.json").write_text('{"b": 1, "a": 2}\n')
        (d / "round-0001.json").write_text('{"round": 1}\n')
        (d / "round-0003.json").write_text('{"round": 3}\n')
        self.assertEqual(metrics.collect(str(d), 3), '{"b": 1, "a": 2}\n{"round": 1}\n')


class Schedules(unittest.TestCase):
    def test_diloco(self):
        self.assertEqual(schedules.diloco(2, 5), "cosine:warmup=1,total=10,min_lr=0")
        self.assertEqual(schedules.diloco(10, 50), "cosine:warmup=50,total=500,min_lr=0")
        self.assertEqual(schedules.diloco(100, 200), "cosine:warmup=1000,total=20000,min_lr=0")

    def test_demo(self):
        self.assertEqual(schedules.demo(10, "4e-4"), f"cosine:warmup=1,total=10,min_lr={0.1 * 4e-4!r}")
        self.assertEqual(schedules.demo(5000, "1e-3"), f"cosine:warmup=250,total=5000,min_lr={0.1 * 1e-3!r}")
        self.assertEqual(schedules.demo(30, "lr"), "cosine:warmup=3,total=30,min_lr=0")
        self.assertTrue(math.isclose(float(schedules.demo(10, "4e-4").rsplit("=", 1)[1]), 4e-5))

    def test_scheduled_lr_is_locos(self):
        # lib/loco/optim/schedule.hpp: warm-up from lr/W, cosine from lr(W) = lr to min_lr at T.
        s = "cosine:warmup=4,total=12,min_lr=0.5"
        self.assertEqual([schedules.scheduled_lr(s, 2.0, t) for t in (0, 3, 4, 8, 12, 20)],
                         [0.5, 2.0, 2.0, 2.0 * 0.5 + 0.5 * 0.5, 0.5, 0.5])
        self.assertEqual(schedules.scheduled_lr("linear:total=10", 1.0, 5), 0.5)
        self.assertEqual(schedules.scheduled_lr("constant:warmup=2", 3.0, 0), 1.5)

    def test_constant_rounds(self):
        self.assertEqual(schedules.round_steps("constant", 12, 5, "", "constant"), [5, 5, 2])

    def test_qsr(self):
        # Constant lr 0.01 after a warm-up of 4: H_base = 2 during it, then (0.05/0.01)^2 = 25, clipped
        # to what is left of the 40 steps.
        self.assertEqual(schedules.round_steps("qsr:alpha=0.05", 40, 2, "0.01", "constant:warmup=4"), [2, 2, 25, 11])
        # power 1: H = 0.05/0.01 = 5; below H_base, H_base wins.
        self.assertEqual(schedules.round_steps("qsr:alpha=0.05,power=1", 20, 2, "0.01", "constant"), [5, 5, 5, 5])
        self.assertEqual(schedules.round_steps("qsr:alpha=0.001", 6, 3, "0.01", "constant"), [3, 3])
        # A decaying rate lengthens the rounds: linear 1 -> 0 over 100 steps, alpha 2: H = floor(4/(1-t/100)^2)
        # at the rounds' first steps t = 0, 4, 8, 12 (5.17), 17 (5.81), 22, 28, 35 (9.47), 44 (12.8), 56 (20.7),
        # and at t = 76 the 24 steps left.
        self.assertEqual(schedules.round_steps("qsr:alpha=2", 100, 4, "1", "linear:total=100"),
                         [4, 4, 4, 5, 5, 6, 7, 9, 12, 20, 24])
        for bad in ("qsr", "qsr:alpha=0", "qsr:alpha=x", "qsr:alpha=1,beta=2", "every:alpha=1", "constant:x=1"):
            with self.assertRaises(ValueError, msg=bad):
                schedules.round_steps(bad, 10, 2, "0.01", "constant")
        with self.assertRaises(ValueError):  # the lr is needed
            schedules.round_steps("qsr:alpha=1", 10, 2, "", "constant")


class LinkModel(unittest.TestCase):
    """scripts/lib/linkmodel.py against hand-computed rounds (exact binary fractions)."""

    def test_parse(self):
        self.assertEqual(linkmodel.parse_link("100Mbit:50ms"), (12.5e6, 0.05))
        self.assertEqual(linkmodel.parse_link("1GiB/s:0.5s"), (1024 ** 3, 0.5))
        self.assertEqual(linkmodel.parse_link("8bit:250us"), (1.0, 250e-6))
        for bad in ("100Mbit", "fast:1ms", "100Mbps:1ms", "100Mbit:1h", "0MB:1ms", "-1MB:1ms"):
            with self.assertRaises(ValueError, msg=bad):
                linkmodel.parse_link(bad)

    ROW = {"round": 1, "worker_wall_seconds": [3.0, 4.0], "aggregate_seconds": 0.5, "inner_steps": 8,
           "bytes_sent_per_worker": 1024, "bytes_received_per_worker": 3072, "model_bytes": 4096, "workers": 4}

    def test_diloco(self):
        # 4 (slowest worker) + 0.5 + 2 * 0.25 + 4096 / 1024
        self.assertEqual(linkmodel.round_seconds(self.ROW, "diloco", 1024.0, 0.25), 9.0)

    def test_streaming_hides_the_exchange_behind_the_overlap(self):
        # P = 2: a stage computes 2 s and exchanges 2*0.25 + 4096/2/1024 = 2.5 s; t_step = 4/8.
        row = self.ROW
        self.assertEqual(linkmodel.round_seconds(row, "streaming-diloco", 1024.0, 0.25, 2, 0), 2 * (2 + 2.5) + 0.5)
        self.assertEqual(linkmodel.round_seconds(row, "streaming-diloco", 1024.0, 0.25, 2, 3), 2 * (2 + 1.0) + 0.5)
        self.assertEqual(linkmodel.round_seconds(row, "streaming-diloco", 1024.0, 0.25, 2, 5), 2 * 2 + 0.5)

    def test_baseline_all_reduces_every_step(self):
        # M = 4, H = 8: per step 4/8/4 compute + 2*3*0.25 latency + 2*3/4 * 4096/1024 bytes.
        self.assertEqual(linkmodel.round_seconds(self.ROW, "baseline", 1024.0, 0.25), 8 * (0.125 + 1.5 + 6.0) + 0.5)

    def test_a_store_run_counts_the_bytes_moved(self):
        row = dict(self.ROW, store={"workers": {"1": {"bytes_up": 2048, "bytes_down": 1024},
                                                "2": {"bytes_up": 1024, "bytes_down": 1024}}})
        self.assertEqual(linkmodel.round_seconds(row, "diloco", 1024.0, 0.25), 4 + 0.5 + 0.5 + 3.0)

    def test_timeline_accumulates_from_round_0(self):
        rows = [{"round": 0}, self.ROW, dict(self.ROW, round=2)]
        self.assertEqual(linkmodel.timeline(rows, "diloco", 1024.0, 0.25), [0.0, 9.0, 18.0])


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    unittest.main()
