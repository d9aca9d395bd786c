// The pickle virtual machine: opcodes of protocols 2-5 that build data, never anything that runs code.
#include "loco/io/pickle.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <unordered_map>

#include "loco/core/error.hpp"

namespace loco::io::pickle {

bool Value::is_global(std::string_view module, std::string_view nm) const noexcept {
  if (kind == Kind::Global) return text == module && name == nm;
  if (kind == Kind::Call && !items.empty()) return items[0]->is_global(module, nm);
  return false;
}

std::string Value::callable() const {
  if (kind != Kind::Call || items.empty()) return {};
  return items[0]->text + "." + items[0]->name;
}

std::span<const Value* const> Value::args() const noexcept {
  if (kind != Kind::Call || items.size() < 2) return {};
  return items[1]->items;
}

std::string describe(const Value& v) {
  switch (v.kind) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::Bytes: return "bytes";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Set: return "set";
    case Value::Kind::Global: return "global " + v.text + "." + v.name;
    case Value::Kind::Call: return v.callable() + "(...)";
    case Value::Kind::PersistentId: return "persistent id";
  }
  return "?";
}

bool allowed_global(std::string_view module, std::string_view name) noexcept {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 23> kExact = {{
      {"collections", "OrderedDict"},
      {"torch._utils", "_rebuild_tensor_v2"},
      {"torch._utils", "_rebuild_tensor_v3"},
      {"torch._utils", "_rebuild_parameter"},
      {"torch._utils", "_rebuild_parameter_with_state"},
      {"torch._tensor", "_rebuild_from_type_v2"},
      {"torch", "Tensor"},
      {"torch", "Size"},
      {"torch", "device"},
      {"torch.nn.parameter", "Parameter"},
      {"builtins", "set"},
      {"builtins", "frozenset"},
      {"builtins", "bytearray"},
      {"__builtin__", "set"},
      {"_codecs", "encode"},
      {"argparse", "Namespace"},
      {"numpy.core.multiarray", "scalar"},
      {"numpy._core.multiarray", "scalar"},
      {"numpy.core.multiarray", "_reconstruct"},
      {"numpy", "dtype"},
      {"numpy", "ndarray"},
      {"deepspeed.checkpoint.constants", "SubparamShape"},
      {"deepspeed.checkpoint.universal_checkpoint", "SubparamShape"},  // where DeepSpeed defines it
  }};
  for (const auto& [m, n] : kExact)
    if (m == module && n == name) return true;
  // torch.FloatStorage, torch.UntypedStorage, ... and dtypes torch.float32, torch.bfloat16, ...
  if (module == "torch") {
    if (name.size() > 7 && name.ends_with("Storage")) return true;
    static constexpr std::array<std::string_view, 24> kDtypes = {
        "float32", "float",  "float16", "half",      "bfloat16",   "float64",       "double",      "int64",
        "long",    "int32",  "int",     "int16",     "short",      "int8",          "uint8",       "bool",
        "uint16",  "uint32", "uint64",  "complex64", "complex128", "float8_e4m3fn", "float8_e5m2", "cfloat"};
    return std::find(kDtypes.begin(), kDtypes.end(), name) != kDtypes.end();
  }
  return false;
}

namespace {

using Kind = Value::Kind;

class Machine {
 public:
  Machine(std::span<const std::byte> data, const std::string& where, std::vector<std::unique_ptr<Value>>& arena)
      : data_(data), where_(where), arena_(arena) {}

  const Value* run();

 private:
  [[noreturn]] void fail(std::string_view what) const {
    throw_error(ErrorKind::BadInput, "{}: pickle byte {} (opcode 0x{:02x}): {}", where_, op_pos_, op_, what);
  }
  const std::byte* take(std::size_t n) {
    if (n > data_.size() - pos_) fail("truncated pickle");
    const std::byte* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::uint64_t le(std::size_t n) {
    const std::byte* p = take(n);
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
    return v;
  }
  std::string line() {
    const std::size_t start = pos_;
    while (pos_ < data_.size() && data_[pos_] != std::byte{'\n'}) ++pos_;
    if (pos_ == data_.size()) fail("truncated pickle (unterminated line)");
    std::string s(reinterpret_cast<const char*>(data_.data() + start), pos_ - start);
    ++pos_;
    return s;
  }
  std::string bytes(std::uint64_t n) {
    if (n > data_.size() - pos_) fail("truncated pickle (string or bytes longer than the data)");
    const std::byte* p = take(static_cast<std::size_t>(n));
    return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
  }

  Value* make(Kind k) {
    // One node per opcode at most: the arena is bounded by the pickle's length.
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  void push(const Value* v) { stack_.push_back(v); }
  const Value* pop() {
    if (stack_.size() <= mark_floor()) fail("stack underflow");
    const Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  const Value* top() {
    if (stack_.size() <= mark_floor()) fail("stack underflow");
    return stack_.back();
  }
  std::size_t mark_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  // Items pushed since the last MARK, which is removed.
  std::vector<const Value*> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<const Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  // Objects that opcodes mutate are ours (arena nodes), so dropping const here is sound.
  Value* mutable_node(const Value* v) { return const_cast<Value*>(v); }

  void memo_put(std::uint64_t index) {
    const Value* v = top();
    if (memo_.size() >= data_.size()) fail("memo larger than the pickle");
    memo_[index] = v;
  }
  void memo_get(std::uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail("memo entry " + std::to_string(index) + " was never stored");
    push(it->second);
  }

  const Value* integer(std::int64_t v) {
    Value* n = make(Kind::Int);
    n->integer = v;
    return n;
  }
  const Value* long_le(std::uint64_t n) {
    if (n > 8) fail("integer wider than 64 bits");
    const std::byte* p = take(static_cast<std::size_t>(n));
    std::uint64_t u = 0;
    for (std::size_t i = 0; i < n; ++i) u |= std::uint64_t(std::to_integer<std::uint8_t>(p[i])) << (8 * i);
    if (n > 0 && n < 8 && (std::to_integer<std::uint8_t>(p[n - 1]) & 0x80)) u |= ~std::uint64_t{0} << (8 * n);
    return integer(static_cast<std::int64_t>(u));
  }
  const Value* tuple(std::vector<const Value*> items) {
    Value* t = make(Kind::Tuple);
    t->items = std::move(items);
    return t;
  }
  const Value* global(std::string module, std::string name) {
    if (!allowed_global(module, name))
      fail(
          fmt::format("global {}.{} is not on the allow-list of data loco reads (a pickle that would run code "
                      "or build arbitrary objects is refused)",
                      module, name));
    Value* g = make(Kind::Global);
    g->text = std::move(module);
    g->name = std::move(name);
    return g;
  }
  const Value* call(const Value* callable, const Value* args);
  void set_items(const Value* target, std::span<const Value* const> kv);
  void add_items(const Value* target, std::span<const Value* const> items);
  void build(const Value* target, const Value* state);

  std::span<const std::byte> data_;
  const std::string& where_;
  std::vector<std::unique_ptr<Value>>& arena_;
  std::size_t pos_ = 0, op_pos_ = 0;
  unsigned op_ = 0;
  std::vector<const Value*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, const Value*> memo_;
};

const Value* Machine::call(const Value* callable, const Value* args) {
  if (!callable->is(Kind::Global)) fail("REDUCE/NEWOBJ of " + describe(*callable) + ", expected a global");
  if (!args->is(Kind::Tuple)) fail("REDUCE/NEWOBJ arguments are a " + describe(*args) + ", expected a tuple");
  const auto& a = args->items;
  if (callable->is_global("collections", "OrderedDict")) {
    if (!a.empty()) fail("OrderedDict with arguments");
    return make(Kind::Dict);
  }
  if (callable->is_global("builtins", "set") || callable->is_global("builtins", "frozenset") ||
      callable->is_global("__builtin__", "set")) {
    Value* s = make(Kind::Set);
    if (a.size() > 1) fail("set() with more than one argument");
    if (a.size() == 1) {
      if (!a[0]->is(Kind::List) && !a[0]->is(Kind::Tuple) && !a[0]->is(Kind::Set))
        fail("set() of a " + describe(*a[0]));
      s->items = a[0]->items;
    }
    return s;
  }
  if (callable->is_global("_codecs", "encode")) {
    // Protocol 2 writes bytes as _codecs.encode(text, 'latin1'): code points 0-255 are the bytes.
    if (a.size() != 2 || !a[0]->is(Kind::String) || !a[1]->is(Kind::String) ||
        (a[1]->text != "latin1" && a[1]->text != "latin-1"))
      fail("_codecs.encode other than (str, 'latin1')");
    Value* b = make(Kind::Bytes);
    const std::string& s = a[0]->text;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) b->text.push_back(static_cast<char>(c));
      else if ((c == 0xc2 || c == 0xc3) && i + 1 < s.size()) {
        b->text.push_back(static_cast<char>(((c & 0x03) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3f)));
        ++i;
      } else fail("_codecs.encode of a character outside latin-1");
    }
    return b;
  }
  Value* c = make(Kind::Call);
  c->items = {callable, args};
  return c;
}

void Machine::set_items(const Value* target, std::span<const Value* const> kv) {
  if (!target->is(Kind::Dict)) fail("SETITEM(S) on a " + describe(*target) + ", expected a dict");
  if (kv.size() % 2 != 0) fail("SETITEMS with an odd number of items");
  // Keys are kept in order, duplicates included: readers of the tree refuse duplicate keys
  // (a scan for them here would make a crafted pickle quadratic).
  Value* d = mutable_node(target);
  d->items.insert(d->items.end(), kv.begin(), kv.end());
}

void Machine::add_items(const Value* target, std::span<const Value* const> items) {
  if (!target->is(Kind::List) && !target->is(Kind::Set))
    fail("APPEND(S)/ADDITEMS on a " + describe(*target) + ", expected a list or set");
  Value* l = mutable_node(target);
  l->items.insert(l->items.end(), items.begin(), items.end());
}

void Machine::build(const Value* target, const Value* state) {
  // OrderedDict state (the _metadata of a state dict) is an attribute on the dict: not data.
  if (target->is(Kind::Dict)) return;
  if (!target->is(Kind::Call)) fail("BUILD on a " + describe(*target));
  mutable_node(target)->state = state;
}

const Value* Machine::run() {
  while (true) {
    op_pos_ = pos_;
    op_ = std::to_integer<unsigned>(*take(1));
    switch (op_) {
      case 0x80: {  // PROTO
        const auto v = le(1);
        if (v < 2 || v > 5) fail("pickle protocol " + std::to_string(v) + ", expected 2 to 5");
        break;
      }
      case 0x95: {  // FRAME: a length hint only
        const auto n = le(8);
        if (n > data_.size() - pos_) fail("frame longer than the data");
        break;
      }
      case '.': {  // STOP
        if (stack_.size() != 1 || !marks_.empty())
          fail("STOP with " + std::to_string(stack_.size()) + " objects on the stack");
        if (pos_ != data_.size()) fail("bytes after STOP");
        return stack_.back();
      }
      case 'c': {  // GLOBAL
        std::string module = line();
        std::string name = line();
        push(global(std::move(module), std::move(name)));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const Value* name = pop();
        const Value* module = pop();
        if (!module->is(Kind::String) || !name->is(Kind::String)) fail("STACK_GLOBAL of non-strings");
        push(global(module->text, name->text));
        break;
      }
      case 'R': {  // REDUCE
        const Value* args = pop();
        const Value* callable = pop();
        push(call(callable, args));
        break;
      }
      case 0x81: {  // NEWOBJ
        const Value* args = pop();
        const Value* cls = pop();
        push(call(cls, args));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        const Value* kwargs = pop();
        const Value* args = pop();
        const Value* cls = pop();
        if (!kwargs->is(Kind::Dict) || !kwargs->items.empty()) fail("NEWOBJ_EX with keyword arguments");
        push(call(cls, args));
        break;
      }
      case 'b': {  // BUILD
        const Value* state = pop();
        build(top(), state);
        break;
      }
      case 'Q': {  // BINPERSID
        const Value* pid = pop();
        if (!pid->is(Kind::Tuple)) fail("persistent id is a " + describe(*pid) + ", expected a tuple");
        Value* p = make(Kind::PersistentId);
        p->items = {pid};
        push(p);
        break;
      }
      case 'q': memo_put(le(1)); break;          // BINPUT
      case 'r': memo_put(le(4)); break;          // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
      case 'h': memo_get(le(1)); break;          // BINGET
      case 'j': memo_get(le(4)); break;          // LONG_BINGET
      case '(':                                  // MARK
        if (marks_.size() >= data_.size()) fail("too many marks");
        marks_.push_back(stack_.size());
        break;
      case 't': push(tuple(pop_mark())); break;  // TUPLE
      case ')': push(tuple({})); break;          // EMPTY_TUPLE
      case 0x85: {                               // TUPLE1
        const Value* a = pop();
        push(tuple({a}));
        break;
      }
      case 0x86: {  // TUPLE2
        const Value* b = pop();
        const Value* a = pop();
        push(tuple({a, b}));
        break;
      }
      case 0x87: {  // TUPLE3
        const Value* c = pop();
        const Value* b = pop();
        const Value* a = pop();
        push(tuple({a, b, c}));
        break;
      }
      case ']': push(make(Kind::List)); break;  // EMPTY_LIST
      case 'l': {                               // LIST
        Value* l = make(Kind::List);
        l->items = pop_mark();
        push(l);
        break;
      }
      case 'a': {  // APPEND
        const Value* v = pop();
        add_items(top(), std::span(&v, 1));
        break;
      }
      case 'e': {  // APPENDS
        const auto items = pop_mark();
        add_items(top(), items);
        break;
      }
      case '}': push(make(Kind::Dict)); break;  // EMPTY_DICT
      case 'd': {                               // DICT
        const auto items = pop_mark();
        Value* d = make(Kind::Dict);
        set_items(d, items);
        push(d);
        break;
      }
      case 's': {  // SETITEM
        const Value* v = pop();
        const Value* k = pop();
        const Value* kv[2] = {k, v};
        set_items(top(), kv);
        break;
      }
      case 'u': {  // SETITEMS
        const auto items = pop_mark();
        set_items(top(), items);
        break;
      }
      case 0x8f: push(make(Kind::Set)); break;  // EMPTY_SET
      case 0x90: {                              // ADDITEMS
        const auto items = pop_mark();
        add_items(top(), items);
        break;
      }
      case 0x91: {  // FROZENSET
        Value* s = make(Kind::Set);
        s->items = pop_mark();
        push(s);
        break;
      }
      case '0': pop(); break;        // POP
      case '1': pop_mark(); break;   // POP_MARK
      case '2': push(top()); break;  // DUP
      case 'N': push(make(Kind::None)); break;
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        Value* b = make(Kind::Bool);
        b->boolean = op_ == 0x88;
        push(b);
        break;
      }
      case 'J': push(integer(static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4))))); break;  // BININT
      case 'K': push(integer(static_cast<std::int64_t>(le(1)))); break;                              // BININT1
      case 'M': push(integer(static_cast<std::int64_t>(le(2)))); break;                              // BININT2
      case 0x8a: push(long_le(le(1))); break;                                                        // LONG1
      case 0x8b: {                                                                                   // LONG4
        const auto n = static_cast<std::int32_t>(static_cast<std::uint32_t>(le(4)));
        if (n < 0) fail("negative LONG4 length");
        push(long_le(static_cast<std::uint64_t>(n)));
        break;
      }
      case 'G': {  // BINFLOAT, big-endian
        const std::byte* p = take(8);
        std::uint64_t u = 0;
        for (int i = 0; i < 8; ++i) u = (u << 8) | std::to_integer<std::uint8_t>(p[i]);
        Value* f = make(Kind::Float);
        f->real = std::bit_cast<double>(u);
        push(f);
        break;
      }
      case 'X':    // BINUNICODE
      case 0x8c:   // SHORT_BINUNICODE
      case 0x8d:   // BINUNICODE8
      case 'U':    // SHORT_BINSTRING
      case 'T': {  // BINSTRING
        const std::uint64_t n = op_ == 'X' || op_ == 'T' ? le(4) : op_ == 0x8d ? le(8) : le(1);
        if (op_ == 'T' && n > 0x7fffffffu) fail("negative BINSTRING length");
        Value* s = make(Kind::String);
        s->text = bytes(n);
        push(s);
        break;
      }
      case 'B':     // BINBYTES
      case 'C':     // SHORT_BINBYTES
      case 0x8e:    // BINBYTES8
      case 0x96: {  // BYTEARRAY8
        const std::uint64_t n = op_ == 'B' ? le(4) : op_ == 'C' ? le(1) : le(8);
        Value* s = make(Kind::Bytes);
        s->text = bytes(n);
        push(s);
        break;
      }
      default: {
        if (op_ == 'i' || op_ == 'o' || op_ == 'P' || op_ == 0x82 || op_ == 0x83 || op_ == 0x84)
          fail("opcode refused: it creates objects or extensions loco does not read");
        fail("unknown or unsupported pickle opcode");
      }
    }
    if (stack_.size() > data_.size()) fail("stack larger than the pickle");
  }
}

}  // namespace

Pickle parse(std::span<const std::byte> data, const std::string& where) {
  Pickle p;
  p.arena_.reserve(std::min<std::size_t>(data.size(), 1u << 16));
  Machine m(data, where, p.arena_);
  p.root_ = m.run();
  return p;
}

}  // namespace loco::io::pickle
