// The safetensors reader and writer of rnncore/safetensors.h.
#include "rnncore/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "json.h"

namespace rnncore {

namespace {

// The limits of the `safetensors` package (0.8), so that both accept and refuse the same files:
// its MAX_HEADER_SIZE, and serde_json's recursion limit (a header nesting 128 arrays or objects
// is refused).
constexpr std::uint64_t kMaxHeader = 100'000'000;
constexpr int kMaxDepth = 127;
// numpy's limits (NPY_MAXDIMS, and sizes that fit npy_intp), so that rnncore's Python reader can
// load every file accepted here.
constexpr std::size_t kMaxDims = 64;
constexpr std::uint64_t kMaxIntp = std::uint64_t(std::numeric_limits<std::int64_t>::max());

struct DTypeEntry {
  DType dtype;
  const char* name;
  std::size_t bits;
  std::size_t loaded_size;  // bytes per element once loaded in numpy (BF16 widens to float32)
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kBool, "BOOL", 8, 1},
    {DType::kU8, "U8", 8, 1},
    {DType::kI8, "I8", 8, 1},
    {DType::kI16, "I16", 16, 2},
    {DType::kI32, "I32", 32, 4},
    {DType::kI64, "I64", 64, 8},
    {DType::kF16, "F16", 16, 2},
    {DType::kBF16, "BF16", 16, 4},
    {DType::kF32, "F32", 32, 4},
    {DType::kF64, "F64", 64, 8},
    {DType::kU16, "U16", 16, 2},
    {DType::kU32, "U32", 32, 4},
    {DType::kU64, "U64", 64, 8},
    {DType::kC64, "C64", 64, 8},
    {DType::kF8_E4M3, "F8_E4M3", 8, 1},
    {DType::kF8_E5M2, "F8_E5M2", 8, 1},
    {DType::kF8_E8M0, "F8_E8M0", 8, 1},
    {DType::kF8_E4M3FNUZ, "F8_E4M3FNUZ", 8, 1},
    {DType::kF8_E5M2FNUZ, "F8_E5M2FNUZ", 8, 1},
    {DType::kF6_E2M3, "F6_E2M3", 6, 1},
    {DType::kF6_E3M2, "F6_E3M2", 6, 1},
    {DType::kF4, "F4", 4, 1},
};

const DTypeEntry* find_dtype(const std::string& name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return &e;
  return nullptr;
}

const DTypeEntry& dtype_entry(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e;
  throw std::invalid_argument("safetensors: unknown DType value " + std::to_string(int(dtype)));
}

bool host_is_little_endian() {
  const std::uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

// "an array", "a string", ... (for messages).
std::string a_kind(const detail::json::Value& v) {
  const std::string kind = detail::json::kind_name(v.kind);
  return (kind[0] == 'a' || kind[0] == 'o' ? "an " : "a ") + kind;
}

// IEEE half -> float (exact: every half is a float).
float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3FFu) << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(std::uint16_t h) {
  const std::uint32_t bits = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <typename T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// A JSON integer in [0, 2^64), as serde reads a usize: digits only ("-0", "1.0", "1e0" are not).
bool as_size(const detail::json::Value& v, std::uint64_t& out) {
  if (!v.is_number() || v.text.empty() ||
      v.text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v.text.c_str(), &end, 10);
  if (errno == ERANGE || !end || *end != '\0') return false;
  out = std::uint64_t(x);
  return true;
}

// What the package's JSON parser refuses and ours accepts: numbers past the range of a double
// (anywhere, also in members it ignores) and nesting deeper than kMaxDepth. `depth` counts the
// arrays and objects from the root (1) down to `v`.
void check_json_values(const detail::json::Value& v, int depth, const std::string& where) {
  if ((v.is_array() || v.is_object()) && depth > kMaxDepth)
    throw std::runtime_error(where + ": the header nests arrays and objects deeper than " +
                             std::to_string(kMaxDepth) + " levels");
  if (v.is_number() && !std::isfinite(v.number))
    throw std::runtime_error(where + ": the header number " + v.text +
                             " is out of the range of a double");
  for (const auto& item : v.array) check_json_values(item, depth + 1, where);
  for (const auto& member : v.object) check_json_values(member.second, depth + 1, where);
}

// a * b, or false on overflow.
bool mul_u64(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  if (b != 0 && a > std::numeric_limits<std::uint64_t>::max() / b) return false;
  out = a * b;
  return true;
}

}  // namespace

const char* dtype_name(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e.name;
  return "?";
}

std::size_t dtype_bits(DType dtype) { return dtype_entry(dtype).bits; }

std::size_t dtype_size(DType dtype) {
  const std::size_t bits = dtype_entry(dtype).bits;
  return bits % 8 == 0 ? bits / 8 : 0;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  const std::string where = "safetensors file " + in_quotes(path);
  if (!host_is_little_endian())
    throw std::runtime_error(where + ": reading safetensors needs a little-endian machine");
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw std::runtime_error(where + ": no such file");
  if (std::filesystem::is_directory(status))
    throw std::runtime_error(where + ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    const int err = errno;
    throw std::runtime_error(where + ": cannot open it (" +
                             (err ? std::string(std::strerror(err)) : "unknown error") + ")");
  }
  const std::streamoff file_size = in.tellg();
  if (file_size < 0) throw std::runtime_error(where + ": cannot determine its size");
  bytes_.resize(std::size_t(file_size));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(bytes_.data()), file_size))
    throw std::runtime_error(where + ": read error");
  const std::size_t size = bytes_.size();
  if (size < 8)
    throw std::runtime_error(where + ": truncated: " + std::to_string(size) +
                             " bytes, but the file must start with an 8-byte header length");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes_[std::size_t(i)];
  if (n > kMaxHeader)
    throw std::runtime_error(where + ": header length " + std::to_string(n) +
                             " is implausible (not a safetensors file?)");
  if (n > size - 8)
    throw std::runtime_error(where + ": truncated: the header length says " + std::to_string(n) +
                             " bytes but only " + std::to_string(size - 8) + " follow");
  data_start_ = 8 + std::size_t(n);
  const std::size_t data_size = size - data_start_;
  const std::string header(reinterpret_cast<const char*>(bytes_.data() + 8), std::size_t(n));
  const detail::json::Value root = detail::json::parse(header, where + " header");
  if (!root.is_object())
    throw std::runtime_error(where + ": the header is a JSON " +
                             detail::json::kind_name(root.kind) + ", expected an object");
  check_json_values(root, 1, where);

  for (const auto& [name, entry] : root.object) {
    const std::string at = where + ", tensor " + in_quotes(name);
    if (name == "__metadata__") {
      if (entry.is_null()) continue;  // the package reads null as no metadata
      if (!entry.is_object())
        throw std::runtime_error(where + ": __metadata__ must be an object of strings (or null)");
      for (const auto& [k, v] : entry.object) {
        if (!v.is_string())
          throw std::runtime_error(where + ": __metadata__ value of " + in_quotes(k) +
                                   " must be a string, got " + a_kind(v));
        metadata_[k] = v.text;
      }
      continue;
    }
    if (!entry.is_object())
      throw std::runtime_error(at + ": entry must be an object {\"dtype\", \"shape\", " +
                               "\"data_offsets\"}, got " + a_kind(entry));
    TensorInfo t;
    t.name = name;
    const auto* dtype = entry.find("dtype");
    const auto* shape = entry.find("shape");
    const auto* offsets = entry.find("data_offsets");
    if (!dtype || !dtype->is_string()) throw std::runtime_error(at + ": missing string \"dtype\"");
    if (!shape || !shape->is_array()) throw std::runtime_error(at + ": missing array \"shape\"");
    if (!offsets || !offsets->is_array() || offsets->array.size() != 2)
      throw std::runtime_error(at + ": \"data_offsets\" must be [begin, end]");
    const DTypeEntry* kind = find_dtype(dtype->text);
    if (!kind) {
      std::string known;
      for (const auto& e : kDTypes) known += std::string(known.empty() ? "" : ", ") + e.name;
      throw std::runtime_error(at + ": unknown dtype " + in_quotes(dtype->text) +
                               " (known: " + known + ")");
    }
    t.dtype = kind->dtype;
    if (shape->array.size() > kMaxDims)
      throw std::runtime_error(at + ": shape has " + std::to_string(shape->array.size()) +
                               " dimensions, more than numpy's " + std::to_string(kMaxDims));
    // The package's rule: the element count, then the bit count, must fit 64 bits (multiplied
    // left to right, so [2^32, 2^32, 0] overflows). numpy's: each dimension, and the byte size
    // of the non-empty dimensions, must fit int64.
    std::uint64_t numel = 1, nonzero_bytes = kind->loaded_size;
    bool overflow = false, too_big = false;
    for (const auto& d : shape->array) {
      std::uint64_t dim = 0;
      if (!as_size(d, dim))
        throw std::runtime_error(at + ": shape entries must be integers in [0, 2^64), got " +
                                 (d.is_number() ? d.text : a_kind(d)));
      overflow = overflow || !mul_u64(numel, dim, numel);
      if (dim > kMaxIntp) too_big = true;
      if (dim != 0 && (!mul_u64(nonzero_bytes, dim, nonzero_bytes) || nonzero_bytes > kMaxIntp))
        too_big = true;
      t.shape.push_back(std::int64_t(std::min(dim, kMaxIntp)));
    }
    std::uint64_t bits = 0;
    if (overflow || !mul_u64(numel, kind->bits, bits))
      throw std::runtime_error(at + ": shape " + shape_string(t.shape) +
                               " overflows 64 bits when its size is computed");
    if (too_big)
      throw std::runtime_error(at + ": shape is too large for an array (a dimension or the byte " +
                               "size of the non-empty dimensions is 2^63 or more)");
    if (bits % 8 != 0)
      throw std::runtime_error(at + ": " + std::to_string(numel) + " elements of " + kind->name +
                               " are " + std::to_string(bits) + " bits, not whole bytes");
    std::uint64_t b = 0, e = 0;
    if (!as_size(offsets->array[0], b) || !as_size(offsets->array[1], e))
      throw std::runtime_error(at + ": data_offsets must be integers in [0, 2^64)");
    if (b > e) throw std::runtime_error(at + ": data_offsets begin > end");
    const std::uint64_t want = bits / 8;
    if (e - b != want)
      throw std::runtime_error(at + ": data_offsets span " + std::to_string(e - b) + " bytes but " +
                               dtype->text + " " + shape_string(t.shape) + " needs " +
                               std::to_string(want));
    if (e > data_size)
      throw std::runtime_error(at + ": truncated: the tensor needs bytes [" + std::to_string(b) +
                               ", " + std::to_string(e) + ") of the data but the file has only " +
                               std::to_string(data_size));
    t.begin = std::size_t(b);
    t.end = std::size_t(e);
    tensors_.push_back(std::move(t));
  }
  // Sorted by offsets, the tensors must tile the data exactly (as the package checks): an empty
  // tensor too must sit where the previous one ends.
  std::stable_sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::size_t pos = 0;
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    const TensorInfo& t = tensors_[i];
    if (t.begin != pos)
      throw std::runtime_error(where + ", tensor " + in_quotes(t.name) + ": data_offsets begin " +
                               std::to_string(t.begin) +
                               (t.begin < pos ? " overlaps the previous tensor"
                                              : " leaves a gap after the previous tensor") +
                               " (which ends at " + std::to_string(pos) + ")");
    pos = t.end;
    index_[t.name] = i;
  }
  if (pos != data_size)
    throw std::runtime_error(where + ": the tensors cover " + std::to_string(pos) +
                             " data bytes but the file has " + std::to_string(data_size) +
                             " (trailing bytes are not allowed)");
}

bool SafeTensorsFile::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& SafeTensorsFile::info(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end())
    throw std::runtime_error("safetensors file " + in_quotes(path_) + ": no tensor named " +
                             in_quotes(name));
  return tensors_[it->second];
}

const unsigned char* SafeTensorsFile::raw(const std::string& name) const {
  return bytes_.data() + data_start_ + info(name).begin;
}

void SafeTensorsFile::check_shape(const TensorInfo& t,
                                  const std::vector<std::int64_t>& expected) const {
  if (t.shape != expected)
    throw std::runtime_error("safetensors file " + in_quotes(path_) + ", tensor " +
                             in_quotes(t.name) + ": shape " + shape_string(t.shape) +
                             " does not match the expected " + shape_string(expected));
}

template <typename T>
std::vector<T> SafeTensorsFile::read_float(const std::string& name) const {
  const TensorInfo& t = info(name);
  const unsigned char* p = raw(name);
  const auto n = std::size_t(t.numel());
  std::vector<T> out(n);
  switch (t.dtype) {
    case DType::kF32:
      for (std::size_t i = 0; i < n; ++i) out[i] = T(load<float>(p + 4 * i));
      break;
    case DType::kF64:
      for (std::size_t i = 0; i < n; ++i) out[i] = T(load<double>(p + 8 * i));
      break;
    case DType::kF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = T(half_to_float(load<std::uint16_t>(p + 2 * i)));
      break;
    case DType::kBF16:
      for (std::size_t i = 0; i < n; ++i) out[i] = T(bf16_to_float(load<std::uint16_t>(p + 2 * i)));
      break;
    case DType::kC64:
      throw std::runtime_error("safetensors file " + in_quotes(path_) + ", tensor " +
                               in_quotes(name) + ": dtype C64 is complex, expected a real " +
                               "floating-point type (F32, F64, F16 or BF16)");
    default:
      throw std::runtime_error("safetensors file " + in_quotes(path_) + ", tensor " +
                               in_quotes(name) + ": dtype " + dtype_name(t.dtype) +
                               " is not a floating-point type rnncore converts (F32, F64, F16 " +
                               "or BF16)");
  }
  return out;
}

std::vector<float> SafeTensorsFile::read_f32(const std::string& name) const {
  return read_float<float>(name);
}

std::vector<float> SafeTensorsFile::read_f32(const std::string& name,
                                             const std::vector<std::int64_t>& expected) const {
  check_shape(info(name), expected);
  return read_float<float>(name);
}

std::vector<double> SafeTensorsFile::read_f64(const std::string& name) const {
  return read_float<double>(name);
}

std::vector<double> SafeTensorsFile::read_f64(const std::string& name,
                                              const std::vector<std::int64_t>& expected) const {
  check_shape(info(name), expected);
  return read_float<double>(name);
}

std::vector<std::int64_t> SafeTensorsFile::read_i64(const std::string& name) const {
  const TensorInfo& t = info(name);
  const unsigned char* p = raw(name);
  const auto n = std::size_t(t.numel());
  std::vector<std::int64_t> out(n);
  switch (t.dtype) {
    case DType::kI64:
      for (std::size_t i = 0; i < n; ++i) out[i] = load<std::int64_t>(p + 8 * i);
      break;
    case DType::kI32:
      for (std::size_t i = 0; i < n; ++i) out[i] = load<std::int32_t>(p + 4 * i);
      break;
    case DType::kI16:
      for (std::size_t i = 0; i < n; ++i) out[i] = load<std::int16_t>(p + 2 * i);
      break;
    case DType::kI8:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int8_t>(p[i]);
      break;
    case DType::kU8:
    case DType::kBool:
      for (std::size_t i = 0; i < n; ++i) out[i] = p[i];
      break;
    case DType::kU16:
      for (std::size_t i = 0; i < n; ++i) out[i] = load<std::uint16_t>(p + 2 * i);
      break;
    case DType::kU32:
      for (std::size_t i = 0; i < n; ++i) out[i] = load<std::uint32_t>(p + 4 * i);
      break;
    case DType::kU64:
      for (std::size_t i = 0; i < n; ++i) {
        const auto v = load<std::uint64_t>(p + 8 * i);
        if (v > kMaxIntp)
          throw std::runtime_error("safetensors file " + in_quotes(path_) + ", tensor " +
                                   in_quotes(name) + ": U64 value " + std::to_string(v) +
                                   " at index " + std::to_string(i) + " exceeds the int64 range");
        out[i] = std::int64_t(v);
      }
      break;
    default:
      throw std::runtime_error("safetensors file " + in_quotes(path_) + ", tensor " +
                               in_quotes(name) + ": dtype " + dtype_name(t.dtype) +
                               " is not an integer type");
  }
  return out;
}

// ---- writing ------------------------------------------------------------------------------------

namespace {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  if (!host_is_little_endian())
    throw std::runtime_error("save_safetensors: writing safetensors needs a little-endian machine");
  std::ostringstream header;
  header << "{";
  bool first = true;
  if (!metadata.empty()) {
    header << "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it)
      header << (it == metadata.begin() ? "" : ",") << json_string(it->first) << ":"
             << json_string(it->second);
    header << "}";
    first = false;
  }
  std::map<std::string, int> seen;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      throw std::invalid_argument("save_safetensors: invalid tensor name " + in_quotes(t.name));
    if (seen[t.name]++)
      throw std::invalid_argument("save_safetensors: duplicate tensor name " + in_quotes(t.name));
    std::int64_t numel = 1;
    for (auto d : t.shape) {
      if (d < 0)
        throw std::invalid_argument("save_safetensors: tensor " + in_quotes(t.name) +
                                    " has a negative size in " + shape_string(t.shape));
      numel *= d;
    }
    if (!t.data && numel > 0)
      throw std::invalid_argument("save_safetensors: tensor " + in_quotes(t.name) + " has no data");
    const std::uint64_t bits = std::uint64_t(numel) * dtype_bits(t.dtype);
    if (bits % 8 != 0)
      throw std::invalid_argument("save_safetensors: tensor " + in_quotes(t.name) + ": " +
                                  std::to_string(numel) + " elements of " + dtype_name(t.dtype) +
                                  " do not fill whole bytes");
    const std::uint64_t nbytes = bits / 8;
    header << (first ? "" : ",") << json_string(t.name) << ":{\"dtype\":\"" << dtype_name(t.dtype)
           << "\",\"shape\":[";
    for (std::size_t i = 0; i < t.shape.size(); ++i) header << (i ? "," : "") << t.shape[i];
    header << "],\"data_offsets\":[" << offset << "," << offset + nbytes << "]}";
    offset += nbytes;
    first = false;
  }
  header << "}";
  std::string h = header.str();
  while (h.size() % 8 != 0) h += ' ';  // keeps the data 8-byte aligned, as the Python writer does

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw std::runtime_error("save_safetensors: cannot write " + in_quotes(tmp) + " (" +
                               std::strerror(errno) + ")");
    unsigned char len[8];
    std::uint64_t n = h.size();
    for (int i = 0; i < 8; ++i, n >>= 8) len[i] = static_cast<unsigned char>(n & 0xFF);
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(h.data(), std::streamsize(h.size()));
    for (const auto& t : tensors) {
      std::int64_t numel = 1;
      for (auto d : t.shape) numel *= d;
      out.write(static_cast<const char*>(t.data),
                std::streamsize(std::uint64_t(numel) * dtype_bits(t.dtype) / 8));
    }
    out.flush();
    if (!out) throw std::runtime_error("save_safetensors: write error on " + in_quotes(tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw std::runtime_error("save_safetensors: cannot rename " + in_quotes(tmp) + " to " +
                             in_quotes(path) + " (" + std::strerror(err) + ")");
  }
}

}  // namespace rnncore
