"""Cases for loco-convert: bit-exact round trips, --dtype rounding bounds, stdin/stdout, atomic
outputs that leave nothing behind, refusals, and bad inputs."""

import hashlib
import json
from pathlib import Path

import fixtures
from clitest import Case, all_of


def diff(a, b, *opts, code=0):
    """A check: loco-inspect --diff [opts] a b exits with code (0: the tensors match)."""
    def check(ctx, r):
        d = ctx.run("loco-inspect", "--diff", *opts, a, b)
        assert d.code == code, f"{d.command}: exit {d.code}, expected {code}\n{d.stdout}{d.stderr}"
    return check


def attributes(path):
    def get(ctx):
        return ctx.json("loco-inspect", "--json", path)["attributes"]
    return get


def h5_to_st_metadata(ctx, r):
    """Root attributes become __metadata__ strings, with format = pt and this run's producer."""
    _, meta, tensors = fixtures.read_safetensors(ctx.expand("{tmp}/m.safetensors"))
    assert meta["format"] == "pt" and meta["kind"] == "model", meta
    assert json.loads(meta["model_config"]) == {"type": "mlp", "hidden": [4]}, meta
    assert meta["round"] == "3" and meta["samples"] == "100" and meta["note"] == "hello", meta
    assert meta["producer"].startswith("loco-convert 0.1.0"), meta
    assert "loco_format" not in meta and "loco_version" not in meta, meta
    assert set(tensors) == set(fixtures.model_tensors()), sorted(tensors)


def st_to_h5_attributes(ctx, r):
    a = attributes("{tmp}/m.h5")(ctx)
    assert a["loco_format"] == "loco" and a["loco_version"] == 1 and a["kind"] == "model", a
    assert a["source_format"] == "safetensors", a
    assert a["model_config"] == '{"hidden":[4],"type":"mlp"}', "model_config is not stored in canonical form: " + a[
        "model_config"]
    assert a["producer"].startswith("loco-convert 0.1.0") and "{tmp}/m.h5".replace("{tmp}", str(ctx.tmp)) in a[
        "producer"], a["producer"]
    assert len(a["created"]) == 20 and a["created"].endswith("Z"), a["created"]


def h5_to_h5_attributes(ctx, r):
    a = attributes("{tmp}/copy.h5")(ctx)
    assert a["round"] == 3 and a["samples"] == 100 and a["note"] == "hello", a  # integers stay integers
    assert "source_format" not in a, a


def assert_attrs(ctx, path, want):
    got = attributes(path)(ctx)
    bad = {k: got.get(k) for k, v in want.items() if got.get(k) != v}
    assert not bad, f"attributes {bad}, expected {want}"


def assert_group_attrs(ctx, path, want):
    got = ctx.json("loco-inspect", "--json", path).get("group_attributes", {})
    assert got == want, f"group attributes {got}, expected {want}"


def tensors_only(ctx, src, out):
    """out holds src's /tensors (same checksum) and root attributes but no /state."""
    a, b = (ctx.json("loco-inspect", "--checksum", "--json", p) for p in (src, out))
    groups = [t["group"] for t in b["tensors"]]
    assert groups and all(g == "tensors" for g in groups), groups
    assert any(t["group"] != "tensors" for t in a["tensors"]), "the fixture has no state"
    assert "state" not in b.get("group_attributes", {}), b.get("group_attributes")
    assert a["tensors_checksum"] == b["tensors_checksum"], (a["tensors_checksum"], b["tensors_checksum"])
    keep = {k: v for k, v in a["attributes"].items() if k not in ("producer", "created")}
    assert {k: b["attributes"].get(k) for k in keep} == keep, b["attributes"]


def dtypes_are(path, want):
    def check(ctx, r):
        j = ctx.json("loco-inspect", "--json", path)
        got = {t["name"]: t["dtype"] for t in j["tensors"]}
        for k, v in want.items():
            assert got[k] == v, f"{k}: {got[k]}, expected {v}"
    return check


def only_tensors(path, names):
    def check(ctx, r):
        got = set(fixtures.read_safetensors(ctx.expand(path))[2])
        assert got == names, f"{ctx.expand(path)} holds {sorted(got)}, expected {sorted(names)}"
    return check


def same_bytes(a, b):
    def check(ctx, r):
        ha, hb = (hashlib.sha256(Path(ctx.expand(p)).read_bytes()).hexdigest() for p in (a, b))
        assert ha == hb, f"{ctx.expand(a)} and {ctx.expand(b)} differ"
    return check


# Bounds for float32 → f16/bf16 → float32, round to nearest: the error is at most half an ulp.
# bfloat16 keeps 8 significant bits: |x − r(x)| ≤ 2^-8·|x| (2^e ≤ |x| and ulp = 2^(e−7)).
# float16 keeps 11 bits: ≤ 2^-11·|x| for normal x; below 2^-14 its spacing is 2^-24, so ≤ 2^-25.
BF16_RTOL = str(2.0 ** -8)
F16_RTOL, F16_ATOL = str(2.0 ** -11), str(2.0 ** -25)


# The DeepSpeed universal checkpoint fixture folder made by tests/data/ucp/make_fixtures.py.
UCP = str(Path(__file__).resolve().parents[2] / "data" / "ucp" / "ckpt")


def listing_of(folder, want):
    def check(ctx, r):
        root = Path(ctx.expand(folder))
        got = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        assert got == sorted(want), f"{root} holds {got}, expected {sorted(want)}"
    return check


UCP_FILES = [f"zero/{p}/{f}.pt" for p in ("emb.weight", "qkv.weight") for f in ("fp32", "exp_avg", "exp_avg_sq", "step")]


def bad_input(name, path, why, code=4):
    return Case(f"refuses {name}", [path, "{tmp}/out.h5"], code=code, listing={"{tmp}": []},
                stderr_re=rf"\Aloco-convert: error: {path}: .*{why}")


def assert_index(ctx, path):
    j = json.loads(Path(ctx.expand(path)).read_text())
    files = sorted(set(j["weight_map"].values()))
    n = len(files)
    assert n > 1 and files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)], files
    total = 0
    for f in files:
        _, _, tensors = fixtures.read_safetensors(str(Path(ctx.expand(path)).parent / f))
        for name, t in tensors.items():
            assert j["weight_map"][name] == f, (name, f)
            total += t[2][1] - t[2][0]  # (dtype, array, (begin, end))
    assert j["metadata"]["total_size"] == total, (j["metadata"], total)


def tensor_attrs(ctx, path):
    return {(t["group"], t["name"]): t.get("attributes", {}) for t in ctx.json("loco-inspect", "--json", path)["tensors"]}


def same_tensor_attrs(a, b):
    def check(ctx, r):
        ta, tb = tensor_attrs(ctx, a), tensor_attrs(ctx, b)
        assert ta == tb, f"per-tensor attributes differ:\n{ta}\n{tb}"
    return check


def assert_tp_dims(ctx, path, want):
    got = {name: a.get("tp_dim") for (g, name), a in tensor_attrs(ctx, path).items() if g == "tensors"}
    bad = {k: got.get(k) for k, v in want.items() if got.get(k) != v}
    assert not bad, f"tp_dim {bad}, expected {want}"


def qkv_slices(ctx, r):
    """qkv.weight [8, 1] holds 9 + 0.25·i; sub_param_shape ((4, 2, 2), 1): rank 0 takes q rows 0-1, k row 4, v row 6."""
    j = ctx.json("loco-inspect", "--json", "--stats", "{tmp}/tp-00001-of-00002.h5")
    t = {(x["group"], x["name"]): x for x in j["tensors"]}[("tensors", "qkv.weight")]
    assert t["shape"] == [4, 1], t
    # i = 0, 1, 4, 6: mean 9 + 0.25·2.75, min 9, max 10.5 (sums of quarters are exact in float32)
    assert t["stats"]["mean"] == 9 + 0.25 * 2.75 and t["stats"]["min"] == 9 and t["stats"]["max"] == 10.5, t["stats"]


CASES = [
    # Round trips, each compared tensor by tensor with loco-inspect --diff (exact: no tolerance).
    Case("h5 → safetensors", ["{fx}/model.h5", "{tmp}/m.safetensors"], stderr_empty=True,
         listing={"{tmp}": ["m.safetensors"]}, unchanged="{fx}/model.h5",
         check=all_of(diff("{fx}/model.h5", "{tmp}/m.safetensors"), h5_to_st_metadata)),
    Case("safetensors → h5", ["{fx}/model.safetensors", "{tmp}/m.h5"], listing={"{tmp}": ["m.h5"]},
         check=all_of(diff("{fx}/model.safetensors", "{tmp}/m.h5"), st_to_h5_attributes)),
    Case("h5 → safetensors → h5 is bit-exact", ["{tmp}/m.safetensors", "{tmp}/back.h5"],
         setup=["loco-convert {fx}/model.h5 {tmp}/m.safetensors"], check=diff("{fx}/model.h5", "{tmp}/back.h5")),
    Case("safetensors → h5 → safetensors is bit-exact", ["{tmp}/m.h5", "{tmp}/back.safetensors"],
         setup=["loco-convert {fx}/model.safetensors {tmp}/m.h5"],
         check=diff("{fx}/model.safetensors", "{tmp}/back.safetensors")),
    Case("h5 → safetensors → h5 keeps integer attributes integers", ["{tmp}/m.safetensors", "{tmp}/back.h5"],
         setup=["loco-convert {fx}/model.h5 {tmp}/m.safetensors"],
         check=lambda ctx, r: assert_attrs(ctx, "{tmp}/back.h5", {"round": 3, "samples": 100})),
    Case("h5 → h5 keeps values and attributes", ["{fx}/model.h5", "{tmp}/copy.h5"],
         check=all_of(diff("{fx}/model.h5", "{tmp}/copy.h5"), h5_to_h5_attributes)),
    Case("a rerun writes the same safetensors file",
         sh="loco-convert {fx}/model.h5 m.safetensors && mv m.safetensors first && loco-convert {fx}/model.h5 "
            "m.safetensors", check=same_bytes("{tmp}/first", "{tmp}/m.safetensors")),
    Case("an existing output is replaced", ["{fx}/model.h5", "{tmp}/out.h5"], setup=["echo junk > {tmp}/out.h5"],
         listing={"{tmp}": ["out.h5"]}, check=diff("{fx}/model.h5", "{tmp}/out.h5")),

    # --dtype: bit-exact round to nearest even against numpy, and the half-ulp bound back in f32.
    Case("--dtype bf16 rounds to nearest even", ["--dtype", "bf16", "{fx}/floats.h5", "{tmp}/bf.h5"],
         check=diff("{tmp}/bf.h5", "{fx}/floats_bf16.safetensors")),
    Case("--dtype f16 rounds to nearest even", ["--dtype", "f16", "{fx}/floats.h5", "{tmp}/h.safetensors"],
         check=all_of(diff("{tmp}/h.safetensors", "{fx}/floats_f16.safetensors"),
                      dtypes_are("{tmp}/h.safetensors", {"v": "float16", "m": "float16"}))),
    Case("bf16 back to f32 is within half an ulp", ["--dtype", "f32", "{tmp}/bf.h5", "{tmp}/back.h5"],
         setup=["loco-convert --dtype bf16 {fx}/floats.h5 {tmp}/bf.h5"],
         check=all_of(diff("{tmp}/back.h5", "{fx}/floats.h5", "--rtol", BF16_RTOL),
                      # the bound is nearly reached: half of it is exceeded somewhere
                      diff("{tmp}/back.h5", "{fx}/floats.h5", "--rtol", str(2.0 ** -9), code=1))),
    Case("f16 back to f32 is within half an ulp", ["--dtype", "f32", "{tmp}/h.h5", "{tmp}/back.safetensors"],
         setup=["loco-convert --dtype f16 {fx}/floats.h5 {tmp}/h.h5"],
         check=all_of(diff("{tmp}/back.safetensors", "{fx}/floats.h5", "--rtol", F16_RTOL, "--atol", F16_ATOL),
                      diff("{tmp}/back.safetensors", "{fx}/floats.h5", "--rtol", str(2.0 ** -12), "--atol",
                           str(2.0 ** -26), code=1))),
    Case("f64 and back is exact", ["--dtype", "f32", "{tmp}/d.h5", "{tmp}/back.h5"],
         setup=["loco-convert --dtype f64 {fx}/floats.h5 {tmp}/d.h5"],
         check=all_of(diff("{tmp}/back.h5", "{fx}/floats.h5"), dtypes_are("{tmp}/d.h5", {"v": "float64"}))),
    Case("--dtype leaves integer and bool tensors alone", ["--dtype", "f16", "{fx}/model.h5", "{tmp}/h.h5"],
         check=dtypes_are("{tmp}/h.h5", {"ids": "int32", "counts": "int64", "mask": "bool", "bytes": "uint8",
                                         "fc1.weight": "float16", "head.weight": "float16", "w64": "float16"})),
    Case("--dtype takes only float types", ["--dtype", "i8", "{fx}/model.h5", "{tmp}/x.h5"], code=2,
         listing={"{tmp}": []}),

    # stdin and stdout.
    Case("writes stdout for a pipe", sh="loco-convert {fx}/model.h5 - | loco-inspect -",
         stdout="<stdin>: loco file, kind model, 11 tensors"),
    Case("reads stdin", ["-", "{tmp}/x.h5"], stdin="{fx}/model.safetensors",
         check=diff("{fx}/model.safetensors", "{tmp}/x.h5")),
    Case("stdin to stdout", sh="cat {fx}/model.safetensors | loco-convert - - | loco-inspect --diff - {fx}/model.h5",
         stdout="tensors match"),
    Case("stdout leaves no temporary file", sh="loco-convert {fx}/model.h5 - > {tmp}/o.h5",
         setup=["mkdir {tmp}/t"], env={"TMPDIR": "{tmp}/t"}, listing={"{tmp}/t": []},
         check=diff("{fx}/model.h5", "{tmp}/o.h5")),
    Case("a failure on stdout leaves no temporary file", sh="loco-convert {fx}/bad_chunk.h5 - > {tmp}/o.h5",
         code=4, setup=["mkdir {tmp}/t"], env={"TMPDIR": "{tmp}/t"}, listing={"{tmp}/t": []}),
    Case("a closed pipe ends quietly", sh="loco-convert {fx}/big.h5 - | head -c 100 > /dev/null",
         stderr_empty=True),

    # Atomic outputs and refusals.
    Case("refuses to overwrite its input", ["{tmp}/in.h5", "{tmp}/in.h5"], code=2, setup=["cp {fx}/model.h5 in.h5"],
         stderr="is also an input", unchanged="{tmp}/in.h5", listing={"{tmp}": ["in.h5"]}),
    Case("refuses its input spelt another way", ["in.h5", "./sub/../in.h5"], code=2,
         setup=["cp {fx}/model.h5 in.h5", "mkdir sub"], unchanged="{tmp}/in.h5", listing={"{tmp}": ["in.h5", "sub"]}),
    Case("refuses its input through a symlink", ["in.h5", "link.h5"], code=2,
         setup=["cp {fx}/model.h5 in.h5", "ln -s in.h5 link.h5"], unchanged="{tmp}/in.h5"),
    Case("refuses its input through a hard link", ["in.h5", "hard.h5"], code=2,
         setup=["cp {fx}/model.h5 in.h5", "ln in.h5 hard.h5"], unchanged="{tmp}/in.h5"),
    Case("a missing output folder is an I/O error", ["{fx}/model.h5", "{tmp}/nodir/out.h5"], code=3,
         stderr_re=r"\Aloco-convert: error: {tmp}/nodir/out.h5: ", listing={"{tmp}": []}),
    Case("an output that is a folder", ["{fx}/model.h5", "{tmp}/o.h5"], code=2, setup=["mkdir {tmp}/o.h5"],
         stderr="directory", listing={"{tmp}/o.h5": []}),
    Case("an unknown output extension", ["{fx}/model.h5", "{tmp}/out.txt"], code=2, stderr="'.txt'",
         listing={"{tmp}": []}),
    Case("a failure leaves nothing behind (h5)", ["{fx}/bad_chunk.h5", "{tmp}/out.h5"], code=4,
         stderr_re=r"\Aloco-convert: error: {fx}/bad_chunk.h5: tensor tensors/b: ", listing={"{tmp}": []}),
    Case("a failure leaves nothing behind (safetensors)", ["{fx}/bad_chunk.h5", "{tmp}/out.safetensors"], code=4,
         listing={"{tmp}": []}),
    Case("a failure keeps the previous output", ["{fx}/bad_chunk.h5", "{tmp}/out.h5"], code=4,
         setup=["cp {fx}/model.h5 {tmp}/out.h5"], unchanged="{tmp}/out.h5", listing={"{tmp}": ["out.h5"]}),
    Case("a data file cannot become safetensors", ["{fx}/data.h5", "{tmp}/d.safetensors"], code=2,
         stderr="{fx}/data.h5: a data file", listing={"{tmp}": []}),
    Case("state tensors are dropped from safetensors with a warning", ["{fx}/state.h5", "{tmp}/s.safetensors"],
         stderr_re=r"\Aloco-convert: warning: {fx}/state.h5: 1 tensors outside /tensors",
         check=only_tensors("{tmp}/s.safetensors", {"w"})),
    Case("group attributes are kept in h5", ["{fx}/state.h5", "{tmp}/s.h5"],
         check=lambda ctx, r: assert_group_attrs(ctx, "{tmp}/s.h5", {"state": {"step": 7}})),
    Case("state tensors are kept in h5", ["{fx}/state.h5", "{tmp}/s.h5"], stderr_empty=True,
         check=diff("{fx}/state.h5", "{tmp}/s.h5")),
    Case("--quiet silences the warning", ["-q", "{fx}/state.h5", "{tmp}/s.safetensors"], stderr_empty=True),
    Case("--tensors-only drops /state and keeps /tensors and the root attributes",
         ["--tensors-only", "{fx}/state.h5", "{tmp}/t.h5"], stderr_empty=True,
         check=all_of(lambda ctx, r: tensors_only(ctx, "{fx}/state.h5", "{tmp}/t.h5"))),
    Case("--tensors-only and --tp exclude each other", ["--tensors-only", "--tp", "2", "{fx}/model.h5", "{tmp}/t.h5"],
         code=2, listing={"{tmp}": []}),

    # DeepSpeed universal checkpoint folders.
    Case("universal checkpoint → h5", [UCP, "{tmp}/u.h5"], stderr_empty=True, listing={"{tmp}": ["u.h5"]},
         check=all_of(diff(UCP, "{tmp}/u.h5"),
                      lambda ctx, r: assert_group_attrs(ctx, "{tmp}/u.h5",
                                                        {"state": {"step": 5, "ucp_step_type": "float32"}}))),
    Case("h5 → universal checkpoint folder (trailing slash) → h5 is bit-exact", ["{tmp}/u.h5", "{tmp}/out/"],
         setup=[f"loco-convert {UCP} {{tmp}}/u.h5"],
         check=all_of(listing_of("{tmp}/out", UCP_FILES), diff(UCP, "{tmp}/out"),
                      lambda ctx, r: assert_group_attrs(ctx, "{tmp}/out",
                                                        {"state": {"step": 5, "ucp_step_type": "float32"}}))),
    Case("--to ucp writes a folder without the slash", ["--to", "ucp", UCP, "{tmp}/out"],
         check=all_of(listing_of("{tmp}/out", UCP_FILES), diff(UCP, "{tmp}/out"))),
    Case("loco-inspect lists a universal checkpoint folder", sh=f"loco-inspect {UCP}",
         stdout=["ucp file, kind model, 6 tensors", "state/exp_avg_sq/qkv.weight"]),
    Case("a universal checkpoint goes into an empty folder only", [UCP, "{tmp}/out/"], code=2,
         setup=["mkdir out", "touch out/keep"], stderr="not an empty folder", listing={"{tmp}": ["out"]}),
    Case("a universal checkpoint with a broken file leaves nothing behind", ["{tmp}/u", "{tmp}/out/"], code=4,
         setup=[f"cp -r {UCP} u", "head -c 100 u/zero/qkv.weight/exp_avg.pt > t && mv t u/zero/qkv.weight/exp_avg.pt"],
         stderr="exp_avg.pt", listing={"{tmp}": ["u"]}),

    # Sharded safetensors output and the index as an input.
    Case("--max-shard-size writes huggingface shards and an index", ["--max-shard-size", "64B", "{fx}/model.h5",
                                                                     "{tmp}/model.safetensors"],
         check=all_of(lambda ctx, r: assert_index(ctx, "{tmp}/model.safetensors.index.json"),
                      diff("{fx}/model.h5", "{tmp}/model.safetensors.index.json"))),
    Case("--max-shard-size with everything in one shard writes one file",
         ["--max-shard-size", "5GB", "{fx}/model.h5", "{tmp}/model.safetensors"], listing={"{tmp}": ["model.safetensors"]}),
    Case("--max-shard-size needs a .safetensors output", ["--max-shard-size", "1MB", "{fx}/model.h5", "{tmp}/m.h5"],
         code=2, stderr="--max-shard-size", listing={"{tmp}": []}),
    Case("--max-shard-size takes sizes", ["--max-shard-size", "5 parsecs", "{fx}/model.h5", "{tmp}/m.safetensors"],
         code=2, stderr="unknown unit", listing={"{tmp}": []}),

    # Tensor-parallel shards and consolidation.
    Case("--tp 2 then --consolidate is bit-exact with attributes", ["--consolidate", "{tmp}/tp-00002-of-00002.h5",
                                                                    "{tmp}/back.h5"],
         setup=[f"loco-convert {UCP} {{tmp}}/u.h5", "loco-convert --tp 2 --vocab-divisible-by 1 {tmp}/u.h5 {tmp}/tp.h5"],
         check=all_of(diff("{tmp}/u.h5", "{tmp}/back.h5"), same_tensor_attrs("{tmp}/u.h5", "{tmp}/back.h5"))),
    Case("--tp slices fused QKV per sub-parameter", ["--tp", "2", "--vocab-divisible-by", "1", UCP, "{tmp}/tp.h5"],
         listing={"{tmp}": ["tp-00001-of-00002.h5", "tp-00002-of-00002.h5"]}, check=qkv_slices),
    Case("--tp with --cat-dim rules", ["--tp", "2", "--cat-dim", "fc.*=0", "--cat-dim", "head.*=replicate",
                                       "{tmp}/m.h5", "{tmp}/tp.h5"],
         setup=["loco-convert {fx}/model.h5 {tmp}/m.h5"],
         check=lambda ctx, r: assert_tp_dims(ctx, "{tmp}/tp-00001-of-00002.h5", {"fc1.weight": 0, "fc1.bias": 0, "head.weight": -1, "emb.weight": -1})),
    Case("--tp refuses sizes the degree does not divide", ["--tp", "3", UCP, "{tmp}/tp.h5"], code=4,
         stderr="not divisible by the degree 3", listing={"{tmp}": []}),
    Case("--tp writes .h5 shards only", ["--tp", "2", UCP, "{tmp}/tp.safetensors"], code=2, stderr=".h5",
         listing={"{tmp}": []}),
    Case("--cat-dim needs REGEX=DIM", ["--tp", "2", "--cat-dim", "x", UCP, "{tmp}/tp.h5"], code=2, stderr="REGEX=DIM"),
    Case("--cat-dim applies with --tp only", ["--cat-dim", "x=0", UCP, "{tmp}/u.h5"], code=2, stderr="--tp",
         listing={"{tmp}": []}),
    Case("--zero 3 then --consolidate is bit-exact with attributes", ["--consolidate", "{tmp}/z-00001-of-00003.h5",
                                                                      "{tmp}/back.h5"],
         setup=[f"loco-convert {UCP} {{tmp}}/u.h5", "loco-convert --zero 3 {tmp}/u.h5 {tmp}/z.h5"],
         check=all_of(diff("{tmp}/u.h5", "{tmp}/back.h5"), same_tensor_attrs("{tmp}/u.h5", "{tmp}/back.h5"),
                      lambda ctx, r: assert_group_attrs(ctx, "{tmp}/back.h5",
                                                        {"state": {"step": 5, "ucp_step_type": "float32"}}))),
    Case("--zero and --tp exclude each other", ["--zero", "2", "--tp", "2", UCP, "{tmp}/z.h5"], code=2,
         listing={"{tmp}": []}),
    Case("--consolidate needs a shard name", ["--consolidate", "{fx}/model.h5", "{tmp}/x.h5"], code=2,
         stderr="-0000r-of-0000T", listing={"{tmp}": []}),

    # Usage and bad inputs.
    Case("needs two files", ["{fx}/model.h5"], code=2, stderr="OUT is required"),
    Case("needs arguments", [], code=2),
    bad_input("an HDF5 file that is not loco", "{fx}/not_loco.h5", "not a loco file"),
    bad_input("a wrong version", "{fx}/wrong_version.h5", "version 2"),
    bad_input("a truncated file", "{fx}/truncated.h5", "truncated"),
    bad_input("a text file", "{fx}/text.txt", "not a tensor file"),
    bad_input("a folder", "{fx}/folder.h5", "folder"),
    bad_input("safetensors with trailing bytes", "{fx}/st_trailing.safetensors", "unexpected bytes"),
    bad_input("safetensors with overlapping tensors", "{fx}/st_overlap.safetensors", "expected to begin"),
    bad_input("safetensors with an oversized header length", "{fx}/st_len_past_end.safetensors", "past the end"),
    bad_input("safetensors with an unknown dtype", "{fx}/st_unknown_dtype.safetensors", "unknown dtype"),
    bad_input("safetensors with duplicate names", "{fx}/st_duplicate_name.safetensors", "duplicate"),
    bad_input("a missing file", "{fx}/no-such-file.h5", "No such file", code=3),
    bad_input("a path in a missing folder", "{fx}/no-such-dir/x.safetensors", "No such file", code=3),
    Case("refuses empty stdin", ["-", "{tmp}/out.h5"], code=4, stderr_re=r"\Aloco-convert: error: <stdin>: ",
         listing={"{tmp}": []}),
]

# Issue 19: hostile files made by tests/cli/hostile.py in the case's folder; a full disk (a file
# size limit: writes past it fail with EFBIG, as on a full disk, once SIGXFSZ is ignored); signals.
HOSTILE_PY = f"/usr/bin/python3 {Path(__file__).resolve().parents[1] / 'hostile.py'}"
BIG_MODEL = "loco-init --config '{\"arch\":\"mlp\",\"sizes\":[256,1024,256]}' -o m.h5"  # 2.1 MB


def host_tag():
    """This machine's name as loco puts it in temporary file names (io/output.cpp)."""
    import re
    import socket
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()[:64]) or "localhost"


def stale_temporary_removed(ctx, r):
    names = sorted(p.name for p in Path(ctx.expand("{tmp}")).iterdir())
    dead = (Path(ctx.expand("{tmp}")) / "dead").read_text().strip()
    h = host_tag()
    assert f".out.h5.tmp-{h}-{dead}-0" not in names, names               # this host, process gone: removed
    assert f".out.h5.tmp-{h}-1-0" in names, names                         # a live process (init): kept
    assert f".out.h5.tmp-other-host-{dead}-0" in names, names             # another machine's: kept
    assert f".other.h5.tmp-{h}-{dead}-0" in names, names                  # another output's: kept
    assert "out.h5" in names


CASES += [
    Case("a model_config nested 100,000 levels is refused at parse time, not a stack overflow",
         ["{tmp}/x.safetensors", "{tmp}/out.h5"], setup=[f"{HOSTILE_PY} deep-config-st x.safetensors 100000"],
         code=4, absent="{tmp}/out.h5",
         stderr_re=r"\Aloco-convert: error: {tmp}/x.safetensors: model_config: JSON nests deeper than 64 levels"),
    Case("a tensor name of 70,000 bytes cannot name a universal checkpoint folder: bad input, not a crash",
         ["--to", "ucp", "{tmp}/x.safetensors", "{tmp}/out"], setup=[f"{HOSTILE_PY} long-name-st x.safetensors 70000"],
         code=4, stderr_re=r"\Aloco-convert: error: {tmp}/x.safetensors: tensor name 'x{200}\.\.\. \(70000 bytes\)' "
                           r"cannot be a folder name", listing={"{tmp}": ["x.safetensors"]}),
    Case("a tensor name with a slash from an input file is bad input", ["{tmp}/x.safetensors", "{tmp}/out.h5"],
         setup=[f"{HOSTILE_PY} slash-name-st x.safetensors"], code=4,
         stderr_re=r"\Aloco-convert: error: {tmp}/out.h5: tensor name 'a/b' cannot be an HDF5 link name",
         listing={"{tmp}": ["x.safetensors"]}),
    Case("IN and OUT the same file is refused before anything is written", ["{fx}/model.h5", "{fx}/model.h5"],
         code=2, unchanged="{fx}/model.h5", stderr_re=r"\Aloco-convert: error: output OUT {fx}/model.h5 is also an input"),
    Case("a full disk while writing HDF5 exits 3 and leaves nothing", setup=[BIG_MODEL],
         sh="trap '' XFSZ; ulimit -f 512; loco-convert m.h5 out.h5", code=3,
         stderr_re=r"\Aloco-convert: error: out.h5: .*\(disk full\?\)\n\Z", listing={"{tmp}": ["m.h5"]}),
    Case("a full disk while writing safetensors exits 3 and leaves nothing", setup=[BIG_MODEL],
         sh="trap '' XFSZ; ulimit -f 512; loco-convert m.h5 out.safetensors", code=3,
         stderr_re=r"\Aloco-convert: error: ", listing={"{tmp}": ["m.h5"]}),
    Case("SIGTERM while writing removes the temporary file and exits 143", setup=[BIG_MODEL, "mkdir t", "mkfifo p"],
         # stdout is a pipe nobody reads: the tool blocks copying its finished temporary file to it.
         sh="exec 3<>p; { TMPDIR=$PWD/t loco-convert m.h5 - > p & } ; pid=$!; "
            "for i in $(seq 200); do [[ -n $(ls -A t) ]] && break; sleep 0.05; done; sleep 0.5; "
            "ls -A t | wc -l; kill -TERM $pid; wait $pid; echo \"exit $?\"; ls -A t | wc -l",
         stdout_re=r"\A1\nexit 143\n0\n\Z"),
    Case("a rerun removes the temporaries of killed runs on this machine, and only those",
         ["{tmp}/m.h5", "{tmp}/out.h5"],
         setup=[BIG_MODEL, "sleep 0 & p=$!; wait $p; echo $p > dead; "
                f"h={host_tag()}; touch .out.h5.tmp-$h-$p-0 .out.h5.tmp-$h-1-0 .out.h5.tmp-other-host-$p-0 "
                ".other.h5.tmp-$h-$p-0"],
         check=stale_temporary_removed),
]
