// Reading and writing safetensors files (the weights of an rnncore checkpoint), without
// dependencies.
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, a
// JSON header of N bytes mapping each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end]} (byte offsets into the data that follows the header) plus an optional "__metadata__" of
// string values, then the raw little-endian tensor data, row-major.
//
// Which files are accepted: the same as rnncore's Python reader (rnncore/serialization.py), and
// the same as the `safetensors` package (0.8) except where it would be ambiguous or unloadable;
// tests/test_safetensors_agree.py checks all three on a table of edge cases. In short: N <= 10^8;
// the header is UTF-8 JSON (no lone surrogates, numbers that fit a double, nesting <= 127
// levels); every tensor entry is an object with a known dtype, a shape of at most 64 integers in
// [0, 2^64) and data_offsets [begin, end] whose span is exactly the tensor's size; the tensors,
// sorted by offsets, tile the data with no gap, no overlap and no trailing bytes;
// "__metadata__" is null or an object of strings. Refused although the package accepts them:
// duplicate member names anywhere (the package keeps the last: the file means different things to
// different readers), serde's alternative spellings (an entry as an array, a dtype as
// {"F32": null}), and tensors numpy cannot represent (more than 64 dimensions, a dimension >= 2^63,
// or a byte size past 2^63 - 1 even when another dimension is 0).
//
// Errors: a file that cannot be read, is truncated, or whose header is not valid JSON or
// describes tensors that do not fit the data throws std::runtime_error naming the file (and the
// tensor); asking for a tensor that is absent, of another shape or of an unconvertible dtype
// throws std::runtime_error naming the file, the tensor, and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rnncore {

/// Every dtype of the format (safetensors 0.8). The F8/F6/F4 formats and C64 are read from headers
/// (a file holding them is valid) but have no conversion here: read_f32 / read_f64 / read_i64
/// refuse them, as rnncore's Python reader refuses to load them (numpy has no such type).
enum class DType : int {
  kBool,
  kU8,
  kI8,
  kI16,
  kI32,
  kI64,
  kF16,
  kBF16,
  kF32,
  kF64,
  kU16,
  kU32,
  kU64,
  kC64,
  kF8_E4M3,
  kF8_E5M2,
  kF8_E8M0,
  kF8_E4M3FNUZ,
  kF8_E5M2FNUZ,
  kF6_E2M3,
  kF6_E3M2,
  kF4,
};

/// The format's name of a dtype: "BOOL", "U8", ..., "F8_E4M3", "F4".
const char* dtype_name(DType dtype);
/// Bits per element: 1 byte and up for most, 6 for F6_*, 4 for F4 (packed).
std::size_t dtype_bits(DType dtype);
/// Bytes per element; 0 for the sub-byte dtypes (F6_*, F4).
std::size_t dtype_size(DType dtype);

/// "[2, 3]" (for messages).
std::string shape_string(const std::vector<std::int64_t>& shape);

/// One tensor's entry in the header.
struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<std::int64_t> shape;  // [] for a scalar
  std::size_t begin = 0;            // byte range [begin, end) in the data section
  std::size_t end = 0;
  std::int64_t numel() const;
};

/// A whole safetensors file read into memory and checked.
class SafeTensorsFile {
 public:
  /// Reads and validates `path` (the rules at the top of this header). Throws std::runtime_error
  /// on a missing or unreadable file, a truncated file, an invalid header, or tensors whose byte
  /// ranges do not match their shapes or do not tile the data exactly.
  explicit SafeTensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  /// The tensors, ordered by their position in the data.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  /// The "__metadata__" strings (empty if the header has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  bool contains(const std::string& name) const;
  /// Throws std::runtime_error when there is no such tensor.
  const TensorInfo& info(const std::string& name) const;
  /// Raw little-endian bytes of a tensor: [info(name).end - info(name).begin].
  const unsigned char* raw(const std::string& name) const;

  /// The tensor converted to float (from F32, F64, F16 or BF16; BF16 and F16 widen exactly, as
  /// rnncore's Python reader widens BF16 to float32). With `expected_shape`, throws unless the
  /// tensor has exactly that shape.
  std::vector<float> read_f32(const std::string& name) const;
  std::vector<float> read_f32(const std::string& name,
                              const std::vector<std::int64_t>& expected_shape) const;
  /// The tensor converted to double (from F32, F64, F16 or BF16).
  std::vector<double> read_f64(const std::string& name) const;
  std::vector<double> read_f64(const std::string& name,
                               const std::vector<std::int64_t>& expected_shape) const;
  /// The tensor converted to int64 (from I64, I32, I16, I8, U64, U32, U16, U8 or BOOL); throws
  /// when a U64 value exceeds the int64 range.
  std::vector<std::int64_t> read_i64(const std::string& name) const;

 private:
  std::string path_;
  std::vector<unsigned char> bytes_;  // the whole file
  std::size_t data_start_ = 0;        // 8 + header length
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;

  void check_shape(const TensorInfo& t, const std::vector<std::int64_t>& expected) const;
  template <typename T>
  std::vector<T> read_float(const std::string& name) const;
};

/// A tensor to write: `data` points to numel(shape) elements of `dtype`, row-major.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
};

/// Writes a safetensors file (tensors laid out in the given order, header padded to 8 bytes) that
/// the Python `safetensors` package reads. Writes `path`.tmp and renames it over `path`. Throws
/// std::invalid_argument on duplicate or empty names, negative sizes, or a sub-byte tensor whose
/// bits do not fill whole bytes; std::runtime_error when the file cannot be written.
void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace rnncore
