"""Cases for loco-inspect: listing, --stats, --checksum, --json, --diff, stdin, and bad inputs."""

from pathlib import Path
import json
import math

import numpy as np

import fixtures
from clitest import Case

EPS = np.finfo(np.float64).eps
MODEL_ORDER = list(fixtures.model_tensors())  # creation order of model.h5's tensors


def by_name(j):
    return {t["name"]: t for t in j["tensors"]}


def expect_stats(st, values):
    """st (inspect's JSON stats) against numpy over the finite values. Welford's running mean and
    M2 in float64 err by at most a few n·eps relative to max|x| (Chan et al.), so 4·n·eps·max|x|
    bounds mean, std and l2; counts, min and max are exact."""
    x = np.asarray(values, dtype=np.float64).ravel()
    fin = x[np.isfinite(x)]
    assert st["count"] == x.size, st
    assert st["nan"] == int(np.isnan(x).sum()) and st["inf"] == int(np.isinf(x).sum()), st
    if fin.size == 0:
        assert all(st[k] == 0 for k in ("min", "max", "mean", "std", "l2_norm")), st
        return
    assert st["min"] == fin.min() and st["max"] == fin.max(), st
    tol = 4 * fin.size * EPS * np.abs(fin).max()
    for key, want in (("mean", fin.mean()), ("std", fin.std()), ("l2_norm", math.sqrt(float((fin * fin).sum())))):
        assert abs(st[key] - want) <= tol, f"{key} = {st[key]!r}, numpy gives {want!r} (tolerance {tol:.3g})"


def stats_json_right(ctx, r):
    t = by_name(r.json())
    expect_stats(t["x"]["stats"], fixtures.STATS_X)
    expect_stats(t["y"]["stats"], [[1.5, -2.5, 3.25], [0.0, 10.0, -0.125]])
    expect_stats(t["allnan"]["stats"], [np.nan] * 3)


def stats_of_model_right(ctx, r):
    t = by_name(r.json())
    for name, v in fixtures.model_tensors().items():
        if name == "w64":  # holds 1e300, see the next check
            continue
        vals = fixtures.bf16_bits_to_f32(v.bits) if isinstance(v, fixtures.BF16) else np.asarray(v)
        expect_stats(t[name]["stats"], vals.astype(np.float64))


def stats_of_huge_f64_right(ctx, r):
    """l2 norm and std of [1/3, -2/7, 1e-300, 1e300] are about 1e300 and 4.3e299: representable."""
    st = by_name(r.json())["w64"]["stats"]
    x = fixtures.model_tensors()["w64"].ravel()
    s = np.abs(x).max()
    l2, std = s * math.sqrt(float(((x / s) ** 2).sum())), s * float((x / s).std())
    for key, want in (("l2_norm", l2), ("std", std)):
        assert isinstance(st[key], float) and abs(st[key] - want) <= 1e-12 * want, f"{key} = {st[key]}, want {want}"


def stats_same_for_any_thread_count(ctx, r):
    one = ctx.json("loco-inspect", "--stats", "--json", "--threads", "1", "{fx}/big.h5")
    two = ctx.json("loco-inspect", "--stats", "--json", "--threads", "2", "{fx}/big.h5")
    assert one == r.json() == two, "statistics depend on the thread count"
    expect_stats(by_name(one)["big"]["stats"], fixtures.big_values())


def json_documented_keys(ctx, r):
    j = r.json()
    assert {"file", "format", "kind", "attributes", "tensors", "tensor_count", "total_bytes",
            "tensors_checksum"} <= j.keys(), sorted(j)
    assert j["format"] == "loco" and j["kind"] == "model" and j["tensor_count"] == len(MODEL_ORDER)
    a = j["attributes"]
    assert a["loco_format"] == "loco" and a["loco_version"] == 1 and a["round"] == 3 and a["note"] == "hello", a
    assert [t["name"] for t in j["tensors"]] == MODEL_ORDER, "tensors not in creation order"
    want = fixtures.model_tensors()
    dt = {"fc1.weight": "float32", "emb.weight": "float16", "head.weight": "bfloat16", "w64": "float64",
          "ids": "int32", "counts": "int64", "mask": "bool", "bytes": "uint8", "scale": "float32"}
    total = 0
    for t in j["tensors"]:
        assert {"group", "name", "dtype", "shape", "bytes", "stats", "checksum"} <= t.keys(), t
        assert set(t["stats"]) == {"count", "min", "max", "mean", "std", "l2_norm", "nan", "inf"}, t["stats"]
        assert t["group"] == "tensors"
        v = want[t["name"]]
        arr = v.bits if isinstance(v, fixtures.BF16) else np.asarray(v)
        assert t["shape"] == list(arr.shape), t
        assert t["bytes"] == arr.nbytes, t
        if t["name"] in dt:
            assert t["dtype"] == dt[t["name"]], t
        assert t["checksum"].startswith("xxh64:") and len(t["checksum"]) == 22, t["checksum"]
        total += t["bytes"]
    assert j["total_bytes"] == total
    assert "attributes" not in by_name(j)["head.weight"], "the bfloat16 marker is listed as an attribute"


def checksums(ctx, path):
    j = ctx.json("loco-inspect", "--checksum", "--json", path)
    return {t["name"]: t["checksum"] for t in j["tensors"]}, j["tensors_checksum"]


def checksums_survive_round_trip(ctx, r):
    first = checksums(ctx, "{fx}/model.h5")
    for other in ("{tmp}/m.safetensors", "{tmp}/back.h5", "{fx}/model.safetensors"):
        assert checksums(ctx, other) == first, f"checksums of {ctx.expand(other)} differ from model.h5's"


def checksums_see_one_value(ctx, r):
    (a, sa), (b, sb) = checksums(ctx, "{fx}/base.h5"), checksums(ctx, "{fx}/close.h5")
    assert [k for k in a if a[k] != b[k]] == ["fc1.weight"] and sa != sb


def checksums_see_dtype(ctx, r):
    (a, _), (b, _) = checksums(ctx, "{fx}/model.h5"), checksums(ctx, "{fx}/dtype.h5")
    assert a["fc1.bias"] != b["fc1.bias"], "the same values as f32 and f64 must not share a checksum"


# The one differing element of close.h5: a = 0.5 (base.h5), b = float32(0.501) (close.h5).
A0, B0 = 0.5, float(np.float32(0.501))
D0 = abs(A0 - B0)  # exact in float64 (Sterbenz)


def diff_json_right(ctx, r):
    j = r.json()
    assert j["equal"] is False and len(j["differences"]) == 1, j
    d = j["differences"][0]
    assert d["tensor"] == "tensors/fc1.weight" and d["problem"] == "values" and d["mismatches"] == 1, d
    assert d["max_abs"] == D0 and d["max_rel"] == D0 / B0, d
    assert {"tensor", "problem", "detail", "mismatches", "max_abs", "max_rel"} <= d.keys()


def diff_json_equal(ctx, r):
    assert r.json() == {"equal": True, "differences": []}


def json_per_file_parseable(ctx, r):
    """Either one JSON array of two objects, or JSON lines (one compact object per line)."""
    text = r.stdout.strip()
    try:
        docs = json.loads(text)
        assert isinstance(docs, list) and len(docs) == 2
    except json.JSONDecodeError:
        try:
            docs = [json.loads(line) for line in text.splitlines()]
        except json.JSONDecodeError as e:
            raise AssertionError(f"neither a JSON document nor JSON lines: {e}") from None
        assert len(docs) == 2


def bad_input(name, path, why, code=4):
    """A file loco-inspect must refuse: exit code, and one line '<tool>: error: <path>: ...why...'."""
    return Case(f"refuses {name}", [path], code=code, stdout_empty=True,
                stderr_re=rf"\Aloco-inspect: error: {path}: .*{why}")


HOSTILE = {  # hostile safetensors fixture → what the message must say
    "st_len_over_limit": "not a tensor file",
    "st_len_past_end": "runs past the end",
    "st_len_huge": "not a tensor file",
    "st_offsets_oob": "truncated",
    "st_offsets_size": r"hold 12 bytes",
    "st_overlap": "expected to begin at byte 8",
    "st_gap": "expected to begin at byte 8",
    "st_end_before_begin": r"data_offsets \[8, 0\]",
    "st_trailing": "3 unexpected bytes",
    "st_truncated_data": "truncated",
    "st_unknown_dtype": "unknown dtype 'F7'",
    "st_unsupported_dtype": "F8_E4M3",
    "st_duplicate_name": "duplicate key 'a'",
    "st_duplicate_key": "duplicate key 'dtype'",
    "st_extra_key": "unexpected key 'x'",
    "st_missing_key": "missing key 'shape'",
    "st_negative": "negative",
    "st_float_shape": "non-integer",
    "st_huge_shape": "overflows",
    "st_three_offsets": "exactly two integers",
    "st_bad_json": "not valid JSON",
    "st_not_object": "expected an object",
    "st_metadata_number": "must be a string",
    "st_bad_utf8": "not valid UTF-8",
    "st_header_only_length": "runs past the end",
}

CASES = [
    # Listing.
    Case("lists a loco file", ["{fx}/model.h5"],
         stdout=["{fx}/model.h5: loco file, kind model, 11 tensors", "model_config", "{\"type\": \"mlp\"",
                 "note          hello"],
         stdout_re=[r"^tensors/fc1\.weight +float32 +\[4, 3\] +48 B$", r"^tensors/head\.weight +bfloat16 +\[2, 4\]",
                    r"^tensors/emb\.weight +float16 +\[5, 2\]", r"^tensors/scale +float32 +\[\] +4 B$",
                    r"^tensors/mask +bool +\[3\]", r"^tensors/empty +float32 +\[0, 3\] +0 B$",
                    r"fc1\.weight[^$]*\n.*fc1\.bias[^$]*\n.*emb\.weight"],  # creation order, not name order
         stderr_empty=True),
    Case("lists a safetensors file", ["{fx}/model.safetensors"],
         stdout=["{fx}/model.safetensors: safetensors file, kind model, 11 tensors", "format", "pt"],
         stdout_re=r"^tensors/head\.weight +bfloat16 +\[2, 4\]"),
    Case("lists state and data groups", ["{fx}/state.h5", "{fx}/data.h5"],
         stdout=["state/exp_avg/w", "attributes of /state:", "step", "kind data", "data/x", "data/y"]),
    Case("reads stdin for -", ["-"], stdin="{fx}/model.h5", stdout="<stdin>: loco file, kind model, 11 tensors"),
    Case("reads safetensors on stdin", ["--stats", "-"], stdin="{fx}/model.safetensors",
         stdout="<stdin>: safetensors file"),
    Case("names an unknown option even with a file", ["--no-such-option", "{fx}/model.h5"], code=2,
         stderr="--no-such-option"),
    Case("needs a file", [], code=2),
    Case("multiple --json documents can be told apart", ["--json", "{fx}/stats.h5", "{fx}/nan.h5"],
         check=json_per_file_parseable),

    # Statistics.
    Case("--stats --json gives the right numbers", ["--stats", "--json", "{fx}/stats.h5"], check=stats_json_right),
    Case("--stats text shows them", ["--stats", "{fx}/stats.h5"],
         stdout_re=[r"^tensors/x +float32 +\[8\] +32 B +-2 +4 +0\.66667 +1\.972 +5\.099 +1/1$",
                    r"^tensors/allnan +float32 +\[3\] +12 B +0 +0 +0 +0 +0 +3/0$"]),
    Case("--stats of every dtype", ["--stats", "--json", "{fx}/model.h5"], check=stats_of_model_right),
    Case("--stats of float64 values near 1e300 do not overflow", ["--stats", "--json", "{fx}/model.h5"],
         check=stats_of_huge_f64_right),
    Case("--stats do not depend on the thread count", ["--stats", "--json", "{fx}/big.h5"],
         env={"LOCO_THREADS": "2"}, check=stats_same_for_any_thread_count),

    # Checksums and JSON.
    Case("--json has the documented keys", ["--json", "--stats", "--checksum", "{fx}/model.h5"],
         check=json_documented_keys),
    Case("--checksum text", ["--checksum", "{fx}/model.h5"],
         stdout_re=[r"^tensors/fc1\.weight .* xxh64:[0-9a-f]{16}$", r"^tensors checksum: xxh64:[0-9a-f]{16}$"]),
    Case("checksums equal across h5 → safetensors → h5", ["--checksum", "{tmp}/back.h5"],
         setup=["loco-convert {fx}/model.h5 {tmp}/m.safetensors", "loco-convert {tmp}/m.safetensors {tmp}/back.h5"],
         check=checksums_survive_round_trip),
    Case("checksums change with one value", ["--checksum", "{fx}/close.h5"], check=checksums_see_one_value),
    Case("checksums include the dtype", ["--checksum", "{fx}/dtype.h5"], check=checksums_see_dtype),

    # Diff.
    Case("--diff of equal files exits 0", ["--diff", "{fx}/model.h5", "{fx}/model.safetensors"],
         stdout="tensors match", stderr_empty=True),
    Case("--diff across a round trip exits 0", ["--diff", "{fx}/model.h5", "{tmp}/back.h5"],
         setup=["loco-convert {fx}/model.h5 {tmp}/m.safetensors", "loco-convert {tmp}/m.safetensors {tmp}/back.h5"],
         stdout="tensors match"),
    Case("--diff finds one value", ["--diff", "{fx}/base.h5", "{fx}/close.h5"], code=1,
         stdout=["1 tensors differ", "tensors/fc1.weight: values: 1 of 12 elements differ"]),
    Case("--diff --json", ["--diff", "--json", "{fx}/base.h5", "{fx}/close.h5"], code=1, check=diff_json_right),
    Case("--diff --json of equal files", ["--diff", "--json", "{fx}/model.h5", "{fx}/model.h5"],
         check=diff_json_equal),
    # |a-b| = D0 ≈ 9.9999871e-4 and |b| = 0.501: rtol passes from D0/|b| ≈ 1.99600e-3, atol from D0.
    Case("--rtol just above the difference passes", ["--diff", "--rtol", "0.002", "{fx}/base.h5", "{fx}/close.h5"]),
    Case("--rtol just below the difference fails", ["--diff", "--rtol", "0.00199", "{fx}/base.h5", "{fx}/close.h5"],
         code=1),
    Case("--rtol between the two orders' thresholds passes", ["--diff", "--rtol", "0.001997", "{fx}/base.h5",
                                                                "{fx}/close.h5"]),
    Case("--rtol is relative to the second file", ["--diff", "--rtol", "0.001997", "{fx}/close.h5", "{fx}/base.h5"],
         code=1),  # D0/0.5 = 1.99997e-3 > 0.001997, though D0/0.501 < 0.001997
    Case("--atol just above the difference passes", ["--diff", "--atol", "0.001", "{fx}/base.h5", "{fx}/close.h5"]),
    Case("--atol just below the difference fails", ["--diff", "--atol", "0.00099", "{fx}/base.h5", "{fx}/close.h5"],
         code=1),
    Case("--atol and --rtol add up", ["--diff", "--atol", "0.0005", "--rtol", "0.000999", "{fx}/base.h5",
                                      "{fx}/close.h5"]),  # 0.0005 + 0.000999·0.501 = 1.0005e-3 ≥ D0
    Case("--diff reports a shape mismatch", ["--diff", "--atol", "1e9", "{fx}/model.h5", "{fx}/shape.h5"], code=1,
         stdout="tensors/fc1.bias: shape: [4] vs [5]"),
    Case("--diff reports a dtype mismatch", ["--diff", "--atol", "1e9", "{fx}/model.h5", "{fx}/dtype.h5"], code=1,
         stdout="tensors/fc1.bias: dtype: float32 vs float64"),
    Case("--diff reports a tensor only in B", ["--diff", "{fx}/model.h5", "{fx}/extra.h5"], code=1,
         stdout="tensors/extra: only in B"),
    Case("--diff reports a tensor only in A", ["--diff", "{fx}/extra.h5", "{fx}/model.safetensors"], code=1,
         stdout="tensors/extra: only in A"),
    Case("--diff counts NaN equal to NaN", ["--diff", "{fx}/nan.h5", "{tmp}/nan.safetensors"],
         setup=["loco-convert {fx}/nan.h5 {tmp}/nan.safetensors"]),
    Case("--diff tells inf from -inf whatever the tolerance", ["--diff", "--atol", "1e300", "{fx}/nan.h5",
                                                               "{fx}/nan2.h5"], code=1, stdout="1 of 8 elements"),
    Case("--diff reads stdin", ["--diff", "-", "{fx}/model.h5"], stdin="{fx}/model.safetensors",
         stdout="<stdin> and {fx}/model.h5: tensors match"),
    Case("--diff takes exactly two files", ["--diff", "{fx}/model.h5"], code=2, stderr="exactly two files"),
    Case("--diff refuses three files", ["--diff", "{fx}/model.h5", "{fx}/model.h5", "{fx}/model.h5"], code=2),
    Case("--rtol must not be negative", ["--diff", "--rtol", "-1", "{fx}/model.h5", "{fx}/model.h5"], code=2),
    Case("--diff with a bad file", ["--diff", "{fx}/model.h5", "{fx}/not_loco.h5"], code=4,
         stderr_re=r"\Aloco-inspect: error: {fx}/not_loco.h5: "),

    # Bad inputs: HDF5 and others.
    bad_input("an HDF5 file that is not loco", "{fx}/not_loco.h5", "not a loco file"),
    bad_input("a wrong format marker", "{fx}/wrong_marker.h5", "not a loco file"),
    bad_input("a wrong format version", "{fx}/wrong_version.h5", "version 2"),
    bad_input("a missing format version", "{fx}/no_version.h5", "loco_version"),
    bad_input("a wrong kind", "{fx}/wrong_kind.h5", "kind 'banana'"),
    bad_input("a dtype loco does not read", "{fx}/complex.h5", "tensors/z"),
    bad_input("a truncated HDF5 file", "{fx}/truncated.h5", "truncated or corrupt"),
    bad_input("a file cut inside the signature", "{fx}/truncated_sig.h5", "not a tensor file"),
    bad_input("a corrupt superblock", "{fx}/corrupt.h5", "corrupt"),
    bad_input("an empty file", "{fx}/empty.h5", "empty file"),
    bad_input("a text file", "{fx}/text.txt", "not a tensor file"),
    bad_input("a folder", "{fx}/folder.h5", "folder"),
    Case("refuses a corrupt chunk when reading data", ["--stats", "{fx}/bad_chunk.h5"], code=4,
         stderr_re=r"\Aloco-inspect: error: {fx}/bad_chunk.h5: tensor tensors/b: "),
    Case("refuses empty stdin", ["-"], code=4, stderr_re=r"\Aloco-inspect: error: <stdin>: empty file"),
    bad_input("a missing file", "{fx}/no-such-file.h5", "No such file", code=3),
    bad_input("a path in a missing folder", "{fx}/no-such-dir/model.h5", "No such file", code=3),
    # HDF5 1.10 loops forever on this file (a damaged global heap behind a string attribute,
    # found by fuzz_loco_file); the parse deadline turns the hang into exit 4.
    Case("a file that hangs HDF5's parser ends with exit 4", [str(Path(__file__).resolve().parents[2] / "data/hdf5/corrupt-global-heap.h5")],
         env={"LOCO_PARSE_TIMEOUT": "2"}, code=4, stdout_empty=True,
         stderr_re=r"corrupt-global-heap\.h5: corrupt file: HDF5 did not finish reading its metadata in time"),
] + [bad_input(f"hostile safetensors {name}", f"{{fx}}/{name}.safetensors", why) for name, why in HOSTILE.items()]

# Issue 19: hostile files, each made by tests/cli/hostile.py in the case's folder.
HOSTILE_PY = f"/usr/bin/python3 {Path(__file__).resolve().parents[1] / 'hostile.py'}"
FUZZ_INPUTS = Path(__file__).resolve().parents[2] / "data/fuzz"


def fuzz_inputs_refused(ctx, r):
    """Every input a fuzzer kept (bench/fuzz.sh) reads cleanly or is refused with exit 4."""
    for f in sorted(p for p in FUZZ_INPUTS.glob("*/*") if p.is_file()):
        res = ctx.run("loco-inspect", "--stats", str(f))
        assert res.code in (0, 4), f"{f}: exit {res.code}: {res.stderr.strip()}"


CASES += [
    Case("a .pt nesting 30,000 tensor wrappers is refused, not a stack overflow",
         ["{tmp}/x.pt"], setup=[f"{HOSTILE_PY} deep-pt x.pt 30000"], code=4, stdout_empty=True,
         stderr_re=r"\Aloco-inspect: error: {tmp}/x.pt: tensor w: tensor wrappers nest deeper than 64 levels"),
    Case("a .pt nesting 60 tensor wrappers reads", ["{tmp}/x.pt"], setup=[f"{HOSTILE_PY} deep-pt x.pt 60"],
         stdout="w"),
    Case("a chunked dataset of 2^60 elements never written is refused before any checksum",
         ["--checksum", "{tmp}/x.h5"], setup=[f"{HOSTILE_PY} unwritten-h5 x.h5"], code=4, stdout_empty=True,
         stderr_re=r"\Aloco-inspect: error: {tmp}/x.h5: tensor /tensors/huge: shape \[1099511627776, 1048576\] "
                   r"needs 1125899906842624 chunks but the file stores 0 \(never written\?\)"),
    Case("a .pt view of 2^40 elements over one stored float is refused", ["--stats", "{tmp}/x.pt"],
         setup=[f"{HOSTILE_PY} stride0-pt x.pt"], code=4, stdout_empty=True,
         stderr_re=r"\Aloco-inspect: error: {tmp}/x.pt: tensor w: view of shape \[1048576, 1048576\] .*storage holds 1"),
    Case("a corrupt global heap behind a string attribute ends in exit 4, not a crash inside HDF5",
         ["{tmp}/x.h5"], setup=[f"{HOSTILE_PY} vlen-heap-h5 x.h5"], env={"LOCO_PARSE_TIMEOUT": "10"}, code=4,
         stdout_empty=True,
         stderr_re=r"\Aloco-inspect: error: {tmp}/x.h5: (corrupt file: HDF5 (crashed|did not finish)|.*corrupt)"),
    Case("/dev/zero is not a regular file", ["/dev/zero"], code=4,
         stderr_re=r"\Aloco-inspect: error: /dev/zero: not a regular file"),
    Case("a named pipe is read to its end", sh="mkfifo p && { cat {fx}/model.h5 > p & } && loco-inspect p",
         stdout="fc1.weight"),
    Case("--rtol nan is a usage error, not a match", ["--diff", "--rtol", "nan", "{fx}/model.h5", "{fx}/close.h5"],
         code=2, stderr_re=r"\Aloco-inspect: error: .*--rtol: nan is not a finite number"),
    Case("--atol 1e999 (an infinity) is a usage error", ["--diff", "--atol", "1e999", "{fx}/model.h5",
                                                         "{fx}/close.h5"],
         code=2, stderr="1e999 is not a finite number"),
    Case("every input kept by the fuzzers is read or refused cleanly", sh="true", check=fuzz_inputs_refused),
]

# Issue 18: GGUF files with one hostile header field each (tests/cli/hostile.py gguf-<what>): exit 4
# naming the file and what was wrong, before any allocation the field would size.
GGUF_HOSTILE = {
    "tensor-count": r"bad GGUF header: it declares 9223372036854775808 tensors, more than the \d+ bytes",
    "kv-count": r"bad GGUF header: it declares 4611686018427387904 key/values, more than the \d+ bytes",
    "string-length": r"bad GGUF header: the key of key/value 0 is 4611686018427387904 bytes long at byte 24, past "
                     r"the end of the 99-byte file",
    "array-length": r"key 'a': an array of 1152921504606846976 u32 values does not fit in the 0 bytes left",
    "string-array-length": r"key 'a': an array of 2305843009213693952 str values does not fit",
    "deep-array": r"key 'a': arrays nest deeper than 8 levels",
    "value-type": r"key 'a': its value type is 13, not a GGUF value type",
    "bool": r"key 'a': bool value 2, expected 0 or 1",
    "alignment-3": r"general.alignment is 3, not a power of two",
    "alignment-type": r"general.alignment must be of type u32, found i32",
    "alignment-huge": r"the data section would start at byte 2147483648, past the end of the 160-byte file",
    "offset-past-end": r"tensor 'w': its 16 bytes at offset 1099511627776 of the data section \(byte 96\) run past "
                       r"the end of the 128-byte file",
    "offset-misaligned": r"tensor 'w' has offset 4, not a multiple of the alignment 32",
    "dims-product": r"tensor 'w': dimensions \(innermost first\) 1099511627776, 1099511627776 hold more elements "
                    r"than loco indexes \(2\^62\)",
    "dims-count": r"tensor 'w' has 4294967295 dimensions; GGUF \(ggml\) allows at most 4",
    "q4-row": r"tensor 'w' of type Q4_0 has 16 elements per row, not a multiple of its block of 32",
    "type-q5_0": r"tensor 'w' has ggml type Q5_0, which loco does not read \(it reads F32, F16, BF16",
    "type-unknown": r"tensor 'w' has ggml type 77 \(not a ggml type\), which loco does not read",
    "big-endian": r"a big-endian GGUF file \(version 3 stored byte-swapped\); loco reads little-endian GGUF only",
    "version-1": r"GGUF version 1, which loco does not read \(it reads versions 2 and 3\)",
    "truncated": r"tensor 'w': its 16384 bytes at offset 0 of the data section \(byte 96\) run past the end",
}

CASES += [
    Case(f"hostile GGUF: {what}", ["--stats", "{tmp}/x.gguf"], setup=[f"{HOSTILE_PY} gguf-{what} x.gguf"], code=4,
         stdout_empty=True, stderr_re=r"\Aloco-inspect: error: {tmp}/x.gguf: .*" + why)
    for what, why in GGUF_HOSTILE.items()
]
