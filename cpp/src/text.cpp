// The text pipeline of `rnncore translate` in C++: see text.h.
#include "text.h"

#include <algorithm>
#include <cstdint>

#include "json.h"
#include "text_tables.h"

namespace rnncore::detail {

namespace {

namespace tt = text_tables;

template <std::size_t N>
bool in_ranges(const tt::Range (&table)[N], std::uint32_t cp) {
  const auto* it = std::upper_bound(std::begin(table), std::end(table), cp,
                                    [](std::uint32_t c, const tt::Range& r) { return c < r.lo; });
  return it != std::begin(table) && cp <= (it - 1)->hi;
}

template <std::size_t N>
std::uint32_t mapped(const tt::Map (&table)[N], std::uint32_t key, std::uint32_t fallback) {
  const auto* it = std::lower_bound(std::begin(table), std::end(table), key,
                                    [](const tt::Map& m, std::uint32_t k) { return m.from < k; });
  return it != std::end(table) && it->from == key ? it->to : fallback;
}

bool is_space(std::uint32_t cp) { return in_ranges(tt::kSpace, cp); }

bool is_mark(std::uint32_t cp) { return cp >= 0x300 && cp <= 0x36F; }  // combining diacritics

bool is_word(std::uint32_t cp) {
  if (cp < 0x80)
    return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') ||
           cp == '_';
  if (cp < 0x530) return in_ranges(tt::kWord, cp);
  // Other scripts: letters, except spaces and the punctuation blocks (general, CJK, full-width).
  return !is_space(cp) && !(cp >= 0x2000 && cp <= 0x206F) && !(cp >= 0x3000 && cp <= 0x303F) &&
         !(cp >= 0xFF00 && cp <= 0xFF0F) && !(cp >= 0xFE30 && cp <= 0xFE4F);
}

std::u32string decode(const std::string& s) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80           ? 1
                          : (c >> 5) == 0x6  ? 2
                          : (c >> 4) == 0xE  ? 3
                          : (c >> 3) == 0x1E ? 4
                                             : 0;
    bool ok = n > 0 && i + n <= s.size();
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; ok && k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      ok = (d & 0xC0) == 0x80;
      cp = (cp << 6) | (d & 0x3F);
    }
    out.push_back(ok ? cp : 0xFFFD);
    i += ok ? n : 1;
  }
  return out;
}

std::string encode(const std::u32string& s) {
  std::string out;
  for (std::uint32_t cp : s) json::append_utf8(out, cp);
  return out;
}

std::uint32_t lower(std::uint32_t cp) {
  if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
  return mapped(tt::kLower, cp, cp);
}

}  // namespace

std::string normalize_text(const std::string& text, bool lower_case, bool strip_accents) {
  std::u32string s = decode(text);
  if (strip_accents) {
    std::u32string out;
    for (std::uint32_t cp : s)
      if (!is_mark(cp)) out.push_back(cp < 0x80 ? cp : mapped(tt::kStrip, cp, cp));
    s.swap(out);
  }
  if (lower_case)
    for (auto& cp : s) cp = lower(cp);
  // NFC: a base letter followed by a combining mark that compose into one code point.
  std::u32string out;
  for (std::uint32_t cp : s) {
    if (is_mark(cp) && !out.empty() && out.back() < 0x10000) {
      const std::uint32_t composed = mapped(tt::kCompose, (out.back() << 16) | cp, 0);
      if (composed) {
        out.back() = composed;
        continue;
      }
    }
    out.push_back(cp);
  }
  return encode(out);
}

std::vector<std::string> tokenize(const std::string& text) {
  std::u32string s = decode(text);
  // <br>, <br/>, <br /> (any case, any spaces before the slash) -> one space
  std::u32string t;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<' && i + 3 < s.size() && lower(s[i + 1]) == 'b' && lower(s[i + 2]) == 'r') {
      std::size_t j = i + 3;
      while (j < s.size() && is_space(s[j])) ++j;
      if (j < s.size() && s[j] == '/') ++j;
      if (j < s.size() && s[j] == '>') {
        t.push_back(' ');
        i = j;
        continue;
      }
    }
    t.push_back(s[i]);
  }
  std::vector<std::string> tokens;
  for (std::size_t i = 0; i < t.size();) {
    if (is_space(t[i])) {
      ++i;
    } else if (is_word(t[i])) {
      std::size_t j = i;
      while (j < t.size() && is_word(t[j])) ++j;
      // inner apostrophes: \w+('\w+)*
      while (j + 1 < t.size() && t[j] == '\'' && is_word(t[j + 1])) {
        j += 1;
        while (j < t.size() && is_word(t[j])) ++j;
      }
      tokens.push_back(encode(t.substr(i, j - i)));
      i = j;
    } else {
      tokens.push_back(encode(t.substr(i, 1)));
      ++i;
    }
  }
  return tokens;
}

std::vector<std::string> code_points(const std::string& text) {
  std::vector<std::string> out;
  for (std::uint32_t cp : decode(text)) {
    out.emplace_back();
    json::append_utf8(out.back(), cp);
  }
  return out;
}

std::string lower_text(const std::string& text) {
  std::u32string s = decode(text);
  for (auto& cp : s) cp = lower(cp);
  return encode(s);
}

std::string detokenize(const std::vector<std::string>& tokens) {
  std::string out;
  for (const auto& tok : tokens) {
    const bool tight = tok.size() == 1 && std::string(",.!?;:").find(tok[0]) != std::string::npos;
    if (!out.empty() && !tight) out += ' ';
    out += tok;
  }
  return out;
}

}  // namespace rnncore::detail
