# The GPT-like checkpoint layout of the checkpoint benchmarks (bench/convert.sh, bench/checkpoint.sh):
# 1.0 GiB of float32 in 98 tensors, the largest 128 MiB (the embedding and the head).
def gpt_shapes():
    shapes = {"wte.weight": (32768, 1024)}
    for i in range(16):
        shapes[f"blocks.{i}.attn.qkv.weight"] = (3072, 1024)
        shapes[f"blocks.{i}.attn.proj.weight"] = (1024, 1024)
        shapes[f"blocks.{i}.mlp.fc.weight"] = (4096, 1024)
        shapes[f"blocks.{i}.mlp.proj.weight"] = (1024, 4096)
        shapes[f"blocks.{i}.ln1.weight"] = (1024,)
        shapes[f"blocks.{i}.ln2.weight"] = (1024,)
    shapes["head.weight"] = (32768, 1024)
    return shapes
