// Reading and writing safetensors files (the weights of an rnncore checkpoint), without
// dependencies.
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, a
// JSON header of N bytes mapping each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end]} (byte offsets into the data that follows the header) plus an optional "__metadata__" of
// string values, then the raw little-endian tensor data, row-major.
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

enum class DType : int { kBool, kU8, kI8, kI16, kI32, kI64, kF16, kBF16, kF32, kF64 };

/// The format's name of a dtype: "BOOL", "U8", "I8", "I16", "I32", "I64", "F16", "BF16", "F32",
/// "F64".
const char* dtype_name(DType dtype);
/// Bytes per element.
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
  /// Reads and validates `path`. Throws std::runtime_error on a missing or unreadable file, a
  /// truncated file, an invalid header, or tensors whose byte ranges do not match their shapes or
  /// lie outside (or overlap in) the data.
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

  /// The tensor converted to float (from F32, F64, F16 or BF16). With `expected_shape`, throws
  /// unless the tensor has exactly that shape.
  std::vector<float> read_f32(const std::string& name) const;
  std::vector<float> read_f32(const std::string& name,
                              const std::vector<std::int64_t>& expected_shape) const;
  /// The tensor converted to double (from F32, F64, F16 or BF16).
  std::vector<double> read_f64(const std::string& name) const;
  std::vector<double> read_f64(const std::string& name,
                               const std::vector<std::int64_t>& expected_shape) const;
  /// The tensor converted to int64 (from I64, I32, I16, I8, U8 or BOOL).
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
/// std::invalid_argument on duplicate or empty names or negative sizes, std::runtime_error when
/// the file cannot be written.
void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace rnncore
