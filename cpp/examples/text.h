// Text <-> token ids for the examples, with a checkpoint's vocabulary: character-level when every
// ordinary token is one character (UTF-8 code point), word-level (whitespace) otherwise.
#pragma once

#include <cctype>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "rnncore/inference.h"

namespace example {

// The UTF-8 code points of s, each as its own string (invalid bytes pass as single characters).
inline std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80           ? 1
                    : (c >> 5) == 0x6  ? 2
                    : (c >> 4) == 0xE  ? 3
                    : (c >> 3) == 0x1E ? 4
                                       : 1;
    if (i + n > s.size()) n = 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

inline bool is_special(const rnncore::Vocabulary& v, std::int64_t id) {
  return id == v.pad_id() || id == v.unk_id() || id == v.bos_id() || id == v.eos_id();
}

// True when every token other than the specials is a single character.
inline bool char_level(const rnncore::Vocabulary& v) {
  for (std::int64_t i = 0; i < v.size(); ++i)
    if (!is_special(v, i) && utf8_chars(v.token(i)).size() != 1) return false;
  return !v.empty();
}

inline std::vector<std::int64_t> encode(const rnncore::Vocabulary& v, const std::string& text) {
  std::vector<std::int64_t> ids;
  if (char_level(v)) {
    for (const auto& ch : utf8_chars(text)) ids.push_back(v.id(ch));
  } else {
    std::istringstream in(text);
    for (std::string word; in >> word;) ids.push_back(v.id(word));
  }
  return ids;
}

inline std::string decode(const rnncore::Vocabulary& v, const std::vector<std::int64_t>& ids) {
  const bool chars = char_level(v);
  std::string out;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::int64_t id = ids[i];
    if (id == v.eos_id()) {
      out += '\n';
    } else {
      if (!chars && !out.empty() && out.back() != '\n') out += ' ';
      out += v.token(id);
    }
  }
  return out;
}

// rnncore.data.tokenize (what the sentiment and tagging tasks train on) for ASCII text:
// lower-cased; a token is a run of word characters (letters, digits, '_'; any non-ASCII byte counts
// as one) with inner apostrophes ("don't"), or a single other non-space character ("end." -> end
// .).
inline std::vector<std::string> tokenize(const std::string& text) {
  auto word = [](unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; };
  std::string s = text;
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  std::vector<std::string> out;
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (std::isspace(c)) {
      ++i;
    } else if (word(c)) {
      std::size_t j = i;
      while (j < n && word(static_cast<unsigned char>(s[j]))) ++j;
      while (j + 1 < n && s[j] == '\'' && word(static_cast<unsigned char>(s[j + 1]))) {
        ++j;
        while (j < n && word(static_cast<unsigned char>(s[j]))) ++j;
      }
      out.push_back(s.substr(i, j - i));
      i = j;
    } else {
      out.push_back(s.substr(i, 1));
      ++i;
    }
  }
  return out;
}

// "1,2 3" -> {1, 2, 3}
inline std::vector<std::int64_t> parse_ids(const std::string& s) {
  std::string t = s;
  for (auto& c : t)
    if (c == ',') c = ' ';
  std::istringstream in(t);
  std::vector<std::int64_t> ids;
  for (std::string word; in >> word;) {
    std::size_t used = 0;
    std::int64_t id = 0;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size()) throw std::invalid_argument("not a token id: '" + word + "'");
    ids.push_back(id);
  }
  return ids;
}

}  // namespace example
