"""The wall-clock time a recorded run would take over a link of given bandwidth and latency
(scripts/report --link BANDWIDTH:LATENCY; docs/pipelines.md, "Time at a link speed").

A run's metrics record, per round, what each worker computed (its wall seconds), the aggregation's
seconds and the bytes a worker sent and received. The model adds the time those bytes take on a
link of bandwidth BW (bytes/s) and one-way latency LAT (s), per pipeline:

- DiLoCo (and its variants SparseLoCo, DeMo): a round is the slowest worker's compute, then its
  delta up and the new model down, then the aggregation:
      T = max(worker seconds) + aggregate seconds + 2*LAT + (sent + received) / BW
- Streaming DiLoCo, P fragments, overlap tau steps: each of the P stages of a round computes
  1/P of the round and exchanges one fragment (1/P of the round's bytes), which overlaps the
  next tau inner steps, so only the part longer than tau steps is waited for:
      T = sum over stages of [compute/P + max(0, 2*LAT + (sent + received)/(P*BW) - tau*t_step)]
          + aggregate seconds,     t_step = max(worker seconds) / H
- The synchronous baseline (one process ran the global batch of M workers): M workers at ideal
  data-parallel speed-up each compute 1/M of a step, then one ring all-reduce of the gradient,
  2(M-1) messages of model_bytes/M each way:
      T = H * [t_step/M + 2(M-1)*LAT + 2(M-1)/M * model_bytes / BW] + aggregate seconds

Every worker has its own link of that speed; the aggregator sits next to the store (its transfers
are not on the slow links), as with scripts/diloco --store and --bwlimit at the worker sites. A run
made through a store (--store) recorded the bytes each worker really moved (objects with their file
overhead, records and manifests): those count instead of the payloads, the largest worker's.
"""
import re

_RATE = {"bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8,
         "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_link(text):
    """'100Mbit:50ms' -> (bytes per second, seconds). Units: bit, kbit, Mbit, Gbit, B, KB, MB, GB,
    KiB, MiB, GiB (per second; '/s' optional); s, ms, us. Raises ValueError naming the problem."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]+)(?:/s)?\s*:"
                     r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]+)\s*", text)
    if not m:
        raise ValueError(f"'{text}' is not BANDWIDTH:LATENCY (e.g. 100Mbit:50ms, 1GB:0.2s)")
    bw, bunit, lat, tunit = float(m[1]), m[2].lower(), float(m[3]), m[4]
    if bunit not in _RATE:
        raise ValueError(f"'{text}': unknown bandwidth unit '{m[2]}' (bit, kbit, Mbit, Gbit, B, KB, MB, GB, KiB, MiB, GiB)")
    if tunit not in _TIME:
        raise ValueError(f"'{text}': unknown latency unit '{tunit}' (s, ms, us)")
    if bw <= 0:
        raise ValueError(f"'{text}': the bandwidth must be positive")
    return bw * _RATE[bunit], lat * _TIME[tunit]


def round_seconds(row, kind, bw, lat, fragments=1, overlap=0):
    """The modelled wall seconds of one recorded round (a metrics.jsonl row of round > 0)."""
    walls = row.get("worker_wall_seconds") or [0.0]
    compute = max(walls)
    agg = row.get("aggregate_seconds", 0.0)
    h = row.get("inner_steps") or 1
    sent, received = row.get("bytes_sent_per_worker", 0), row.get("bytes_received_per_worker", 0)
    moved = [w.get("bytes_up", 0) + w.get("bytes_down", 0) for w in row.get("store", {}).get("workers", {}).values()]
    if moved:  # a run through a store: what the slowest-moving worker really transferred
        sent, received = max(moved), 0
    if kind == "baseline":
        m = row.get("workers") or 1
        allreduce = 2 * (m - 1) * lat + 2 * (m - 1) / m * row["model_bytes"] / bw
        return h * (compute / h / m + allreduce) + agg
    if kind == "streaming-diloco":
        t_step = compute / h
        exchange = 2 * lat + (sent + received) / fragments / bw
        return fragments * (compute / fragments + max(0.0, exchange - overlap * t_step)) + agg
    return compute + agg + 2 * lat + (sent + received) / bw


def timeline(rows, kind, bw, lat, fragments=1, overlap=0):
    """Cumulative modelled seconds at the end of each row's round (0 for round 0)."""
    t, out = 0.0, []
    for row in rows:
        if row["round"] > 0:
            t += round_seconds(row, kind, bw, lat, fragments, overlap)
        out.append(t)
    return out
