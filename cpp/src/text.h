// The text pipeline of `rnncore translate` in C++ (Python's normalize_text + tokenize + detokenize,
// rnncore.data.translation / rnncore.data.text), exact for Latin, Greek and Cyrillic text
// (text_tables.h holds Python's Unicode data for them).
#pragma once

#include <string>
#include <vector>

namespace rnncore::detail {

// normalize_text(text, lower=..., strip_accents=...) in NFC: accents stripped (NFD, combining
// marks dropped), lower-cased (str.lower), composed (NFC). Exact for Latin, Greek and Cyrillic
// (below U+0530 and U+1E00-U+1FFF); other scripts pass through unchanged. Malformed UTF-8 bytes
// become U+FFFD, as Python's "replace" decoding.
std::string normalize_text(const std::string& text, bool lower, bool strip_accents);

// tokenize(text, lower=False): "<br />" -> " ", then each match of \w+(?:'\w+)*|[^\w\s].
std::vector<std::string> tokenize(const std::string& text);

// The code points of UTF-8 text, each as its UTF-8 bytes (as Python iterates a str; a malformed
// byte becomes U+FFFD).
std::vector<std::string> code_points(const std::string& text);

// str.lower(text), exact for Latin, Greek and Cyrillic.
std::string lower_text(const std::string& text);

// Tokens joined by spaces, without the space before , . ! ? ; :
std::string detokenize(const std::vector<std::string>& tokens);

}  // namespace rnncore::detail
