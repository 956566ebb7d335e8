// A small JSON reader for the two JSON texts the engine reads: safetensors headers and
// checkpoint.json. Not a general-purpose library: values are parsed into a tree, nothing is
// written.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rnncore::detail::json {

struct Value {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  double number = 0.0;
  std::string text;  // kString: the decoded UTF-8 string; kNumber: the literal as written
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // in file order (duplicates rejected)

  bool is_null() const { return kind == Kind::kNull; }
  bool is_bool() const { return kind == Kind::kBool; }
  bool is_number() const { return kind == Kind::kNumber; }
  bool is_string() const { return kind == Kind::kString; }
  bool is_array() const { return kind == Kind::kArray; }
  bool is_object() const { return kind == Kind::kObject; }
  /// A number written without fraction or exponent that fits in int64.
  bool is_integer() const;
  /// The integer value (call is_integer() first; throws std::runtime_error otherwise).
  std::int64_t as_int64() const;
  /// Member `key` of an object, or nullptr (also when this is not an object).
  const Value* find(const std::string& key) const;
};

/// Appends code point `cp` (at most U+10FFFF) to `out` as UTF-8 (also the text pipeline's).
void append_utf8(std::string& out, std::uint32_t cp);

/// "null", "true", "number", "string", "array" or "object".
const char* kind_name(Value::Kind kind);

/// Parses `text` (the whole of it: trailing non-space characters are an error). Throws
/// std::runtime_error "<what>: invalid JSON at line L, column C: <reason>".
Value parse(const std::string& text, const std::string& what);

}  // namespace rnncore::detail::json
