// The small JSON reader of json.h: a recursive-descent parser with positions in its errors.
#include "json.h"

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <unordered_set>

namespace rnncore::detail::json {

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

namespace {

// Garbled input must not overflow the stack: checkpoints nest a few levels, never hundreds.
constexpr int kMaxDepth = 200;

// Index of the first byte of `s` that is not well-formed UTF-8 (RFC 3629: shortest forms only,
// no surrogates, at most U+10FFFF), or npos.
std::size_t invalid_utf8(const std::string& s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = b[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlong forms
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;  // at most U+10FFFF
    } else {
      return i;
    }
    if (i + len > n || b[i + 1] < lo || b[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (b[i + k] < 0x80 || b[i + k] > 0xBF) return i;
    i += len;
  }
  return std::string::npos;
}

class Parser {
 public:
  Parser(const std::string& text, const std::string& what) : s_(text), what_(what) {}

  Value document() {
    // The whole text must be UTF-8, as Python's reader decodes it first: both readers then
    // accept and refuse the same files (the checkpoint fuzzer found a name with stray bytes).
    if (const std::size_t bad = invalid_utf8(s_); bad != std::string::npos) {
      pos_ = bad;
      fail("not valid UTF-8");
    }
    skip_space();
    Value v = value(0);
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  const std::string& s_;
  const std::string& what_;
  std::size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& reason) const {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw std::runtime_error(what_ + ": invalid JSON at line " + std::to_string(line) +
                             ", column " + std::to_string(col) + ": " + reason);
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }

  void skip_space() {
    while (!at_end() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'" + found());
    ++pos_;
  }

  std::string found() const {
    if (at_end()) return ", found the end of the text";
    const unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x20 && c < 0x7f) return std::string(", found '") + char(c) + "'";
    return ", found byte " + std::to_string(int(c));
  }

  void literal(const char* word) {
    for (const char* p = word; *p; ++p, ++pos_)
      if (peek() != *p) fail(std::string("expected '") + word + "'");
  }

  Value value(int depth) {
    if (depth > kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    Value v;
    switch (peek()) {
      case '{':
        v.kind = Value::Kind::kObject;
        object(v, depth);
        break;
      case '[':
        v.kind = Value::Kind::kArray;
        array(v, depth);
        break;
      case '"':
        v.kind = Value::Kind::kString;
        v.text = string();
        break;
      case 't':
        literal("true");
        v.kind = Value::Kind::kBool;
        v.boolean = true;
        break;
      case 'f':
        literal("false");
        v.kind = Value::Kind::kBool;
        break;
      case 'n':
        literal("null");
        break;
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) {
          number(v);
        } else {
          fail("expected a value" + found());
        }
    }
    return v;
  }

  void object(Value& v, int depth) {
    expect('{');
    skip_space();
    if (peek() == '}') {
      ++pos_;
      return;
    }
    // Duplicate names are found through a hash set: a scan of the members read so far made a
    // safetensors header of 80,000 tensors take 16-27 s (quadratic).
    std::unordered_set<std::string> seen;
    while (true) {
      skip_space();
      if (peek() != '"') fail("expected a member name in double quotes" + found());
      const std::size_t key_pos = pos_;
      std::string key = string();
      if (!seen.insert(key).second) {
        pos_ = key_pos;
        fail("duplicate member \"" + key + "\"");
      }
      skip_space();
      expect(':');
      skip_space();
      v.object.emplace_back(std::move(key), value(depth + 1));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return;
      }
      fail("expected ',' or '}' in an object" + found());
    }
  }

  void array(Value& v, int depth) {
    expect('[');
    skip_space();
    if (peek() == ']') {
      ++pos_;
      return;
    }
    while (true) {
      skip_space();
      v.array.push_back(value(depth + 1));
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return;
      }
      fail("expected ',' or ']' in an array" + found());
    }
  }

  unsigned hex4() {
    unsigned u = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      const char c = peek();
      u <<= 4;
      if (c >= '0' && c <= '9')
        u |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f')
        u |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        u |= unsigned(c - 'A' + 10);
      else
        fail("expected 4 hex digits after \\u");
    }
    return u;
  }

  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (at_end()) fail("unterminated string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character inside a string");
      if (c != '\\') {
        out += c;  // UTF-8 bytes pass through unchanged
        ++pos_;
        continue;
      }
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {  // a surrogate pair encodes one code point
            if (peek() != '\\' || pos_ + 1 >= s_.size() || s_[pos_ + 1] != 'u')
              fail("lone high surrogate in \\u escape");
            pos_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("invalid low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail("lone low surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail("invalid escape in a string");
      }
    }
  }

  void number(Value& v) {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    auto digits = [&]() {
      const std::size_t d0 = pos_;
      while (peek() >= '0' && peek() <= '9') ++pos_;
      if (pos_ == d0) fail("expected a digit in a number");
    };
    if (peek() == '0') {
      ++pos_;
    } else {
      digits();
    }
    if (peek() == '.') {
      ++pos_;
      digits();
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      digits();
    }
    v.kind = Value::Kind::kNumber;
    v.text = s_.substr(start, pos_ - start);
    v.number = std::strtod(v.text.c_str(), nullptr);  // overflow gives ±inf, which callers reject
  }
};

}  // namespace

bool Value::is_integer() const {
  if (kind != Kind::kNumber || text.find_first_of(".eE") != std::string::npos) return false;
  errno = 0;
  char* end = nullptr;
  std::strtoll(text.c_str(), &end, 10);
  return errno == 0 && end && *end == '\0';
}

std::int64_t Value::as_int64() const {
  if (!is_integer())
    throw std::runtime_error("JSON value " + (is_number() ? text : std::string(kind_name(kind))) +
                             " is not an integer");
  return std::strtoll(text.c_str(), nullptr, 10);
}

const Value* Value::find(const std::string& key) const {
  if (kind != Kind::kObject) return nullptr;
  for (const auto& member : object)
    if (member.first == key) return &member.second;
  return nullptr;
}

const char* kind_name(Value::Kind kind) {
  switch (kind) {
    case Value::Kind::kNull:
      return "null";
    case Value::Kind::kBool:
      return "boolean";
    case Value::Kind::kNumber:
      return "number";
    case Value::Kind::kString:
      return "string";
    case Value::Kind::kArray:
      return "array";
    case Value::Kind::kObject:
      return "object";
  }
  return "?";
}

Value parse(const std::string& text, const std::string& what) {
  return Parser(text, what).document();
}

}  // namespace rnncore::detail::json
