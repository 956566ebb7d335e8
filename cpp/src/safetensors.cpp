// The safetensors reader and writer of rnncore/safetensors.h.
#include "rnncore/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "json.h"

namespace rnncore {

namespace {

// Larger headers are garbage, not metadata: the Python package refuses them too (100 MB).
constexpr std::uint64_t kMaxHeader = 100u * 1000u * 1000u;

struct DTypeEntry {
  DType dtype;
  const char* name;
  std::size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},     {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},   {DType::kI32, "I32", 4},   {DType::kI64, "I64", 8},
    {DType::kF16, "F16", 2},   {DType::kBF16, "BF16", 2}, {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},
};

bool host_is_little_endian() {
  const std::uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

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

}  // namespace

const char* dtype_name(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e.name;
  return "?";
}

std::size_t dtype_size(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e.size;
  return 0;
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

  for (const auto& [name, entry] : root.object) {
    const std::string at = where + ", tensor " + in_quotes(name);
    if (name == "__metadata__") {
      if (!entry.is_object())
        throw std::runtime_error(where + ": __metadata__ must be an object of strings");
      for (const auto& [k, v] : entry.object) {
        if (!v.is_string())
          throw std::runtime_error(where + ": __metadata__ value of " + in_quotes(k) +
                                   " must be a string");
        metadata_[k] = v.text;
      }
      continue;
    }
    if (!entry.is_object()) throw std::runtime_error(at + ": entry must be an object");
    TensorInfo t;
    t.name = name;
    const auto* dtype = entry.find("dtype");
    const auto* shape = entry.find("shape");
    const auto* offsets = entry.find("data_offsets");
    if (!dtype || !dtype->is_string()) throw std::runtime_error(at + ": missing string \"dtype\"");
    if (!shape || !shape->is_array()) throw std::runtime_error(at + ": missing array \"shape\"");
    if (!offsets || !offsets->is_array() || offsets->array.size() != 2)
      throw std::runtime_error(at + ": \"data_offsets\" must be [begin, end]");
    bool known = false;
    for (const auto& e : kDTypes)
      if (dtype->text == e.name) {
        t.dtype = e.dtype;
        known = true;
      }
    if (!known) throw std::runtime_error(at + ": unknown dtype " + in_quotes(dtype->text));
    std::uint64_t numel = 1;
    for (const auto& d : shape->array) {
      if (!d.is_integer() || d.as_int64() < 0)
        throw std::runtime_error(at + ": shape entries must be integers >= 0");
      const auto dim = std::uint64_t(d.as_int64());
      if (dim != 0 && numel > std::numeric_limits<std::uint64_t>::max() / 16 / dim)
        throw std::runtime_error(at + ": shape is too large");
      numel *= dim;
      t.shape.push_back(d.as_int64());
    }
    for (const auto& o : offsets->array)
      if (!o.is_integer() || o.as_int64() < 0)
        throw std::runtime_error(at + ": data_offsets must be integers >= 0");
    const auto b = std::uint64_t(offsets->array[0].as_int64());
    const auto e = std::uint64_t(offsets->array[1].as_int64());
    if (b > e) throw std::runtime_error(at + ": data_offsets begin > end");
    const std::uint64_t want = numel * dtype_size(t.dtype);
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
  std::stable_sort(tensors_.begin(), tensors_.end(),
                   [](const TensorInfo& a, const TensorInfo& b) { return a.begin < b.begin; });
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    if (i > 0 && tensors_[i].begin < tensors_[i - 1].end && tensors_[i].begin < tensors_[i].end)
      throw std::runtime_error(where + ": tensors " + in_quotes(tensors_[i - 1].name) + " and " +
                               in_quotes(tensors_[i].name) + " overlap in the data");
    index_[tensors_[i].name] = i;
  }
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
    default:
      throw std::runtime_error("safetensors file " + in_quotes(path_) + ", tensor " +
                               in_quotes(name) + ": dtype " + dtype_name(t.dtype) +
                               " is not a floating-point type");
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
    const std::uint64_t nbytes = std::uint64_t(numel) * dtype_size(t.dtype);
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
                std::streamsize(std::uint64_t(numel) * dtype_size(t.dtype)));
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
