// A bounded, non-executing reader for Python pickles (protocols 2-5): it builds a tree of plain
// values and never calls anything; globals must be on an allow-list, as PyTorch's weights-only loader.
//
// The reader understands the opcodes torch.save state dicts, DeepSpeed and DCP metadata use (see
// design/ref/checkpoints.md §2). A REDUCE or NEWOBJ of an allowed global becomes a Call node
// (callable, arguments, BUILD state) that the caller interprets; OrderedDict(), set(), frozenset()
// and _codecs.encode(text, 'latin1') are evaluated to a Dict, Set and Bytes node. Persistent ids
// become PersistentId nodes. Every node lives in the Pickle's arena, so cycles built through the
// memo are harmless; the number of nodes, stack slots, marks and memo entries is bounded by the
// pickle's length, so memory is linear in the input whatever the bytes say.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace loco::io::pickle {

struct Value {
  enum class Kind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Set, Global, Call, PersistentId };
  Kind kind = Kind::None;
  bool boolean = false;
  std::int64_t integer = 0;
  double real = 0;
  // String and Bytes: the content; Global: the module.
  std::string text;
  // Global: the name within the module.
  std::string name;
  // Tuple, List, Set: the items. Dict: keys and values interleaved (k0, v0, k1, v1, ...).
  // Call: [callable (a Global), arguments (a Tuple)]. PersistentId: [the id].
  std::vector<const Value*> items;
  // Call: the BUILD state, nullptr when none.
  const Value* state = nullptr;

  bool is(Kind k) const noexcept { return kind == k; }
  // Global or Call of module.name.
  bool is_global(std::string_view module, std::string_view name) const noexcept;
  // For a Call: its callable's module.name; "" otherwise.
  std::string callable() const;
  // Call arguments (items of the argument tuple); empty for other kinds.
  std::span<const Value* const> args() const noexcept;
};

// "None", "int", "dict", "torch._utils._rebuild_tensor_v2(...)" — for messages.
std::string describe(const Value& v);

// The parsed pickle: the root object and the arena that owns every node.
class Pickle {
 public:
  const Value& root() const noexcept { return *root_; }
  // Nodes in the arena (at most one per pickle byte): a bound for walks over the tree.
  std::size_t node_count() const noexcept { return arena_.size(); }

 private:
  friend Pickle parse(std::span<const std::byte>, const std::string&);
  std::vector<std::unique_ptr<Value>> arena_;
  const Value* root_ = nullptr;
};

// Whether module.name may appear in a GLOBAL/STACK_GLOBAL: the torch rebuild functions, storage
// classes and dtypes, collections.OrderedDict, builtins set/frozenset/bytearray, _codecs.encode,
// and, as opaque data, argparse.Namespace, numpy scalars/dtypes/arrays and DeepSpeed's SubparamShape.
bool allowed_global(std::string_view module, std::string_view name) noexcept;

// Parses one pickle (up to and including STOP; trailing bytes are an error). where names the
// source in messages ("model.pt:archive/data.pkl"). Throws Error(BadInput) naming where and the
// byte offset for an unknown or unsupported opcode, a global off the allow-list, a persistent id
// that is not a tuple, truncation, integers beyond 64 bits, operations on the wrong kind of
// object and stack/mark/memo misuse.
Pickle parse(std::span<const std::byte> data, const std::string& where);

}  // namespace loco::io::pickle
