// Prints what rnncore's C++ safetensors reader makes of each file named on the command line, for
// tests/test_safetensors_agree.py to compare with the Python reader and the `safetensors` package.
//
// Output, per file: "FILE <path>", then either "ERR <message>" (the file is refused) or "OK",
// one "M <key hex> <value hex>" per metadata entry and one line per tensor,
//   "T <name hex> <dtype> <d0,d1,...> F <v> <v> ..."  values read with read_f64 (%.17g),
//   "T <name hex> <dtype> <dims> I <v> ..."             values read with read_i64,
//   "T <name hex> <dtype> <dims> R <bytes hex>"         raw bytes (U64, C64: no conversion),
//   "T <name hex> <dtype> <dims> X <message>"           a dtype the reader refuses to convert;
// then "END". Names and strings are hex-encoded UTF-8 so that any byte survives.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "rnncore/safetensors.h"

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[p[i] >> 4];
    out += digits[p[i] & 15];
  }
  return out.empty() ? "-" : out;
}

std::string hex(const std::string& s) {
  return hex(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

void print_tensor(const rnncore::SafeTensorsFile& file, const rnncore::TensorInfo& t) {
  using rnncore::DType;
  std::string dims;
  for (std::size_t i = 0; i < t.shape.size(); ++i)
    dims += (i ? "," : "") + std::to_string(t.shape[i]);
  std::printf("T %s %s %s ", hex(t.name).c_str(), rnncore::dtype_name(t.dtype),
              dims.empty() ? "-" : dims.c_str());
  try {
    switch (t.dtype) {
      case DType::kF16:
      case DType::kBF16:
      case DType::kF32:
      case DType::kF64:
        std::printf("F");
        for (const double v : file.read_f64(t.name)) std::printf(" %.17g", v);
        break;
      case DType::kBool:
      case DType::kU8:
      case DType::kI8:
      case DType::kU16:
      case DType::kI16:
      case DType::kU32:
      case DType::kI32:
      case DType::kI64:
        std::printf("I");
        for (const std::int64_t v : file.read_i64(t.name))
          std::printf(" %lld", static_cast<long long>(v));
        break;
      case DType::kU64:
      case DType::kC64:
        std::printf("R %s", hex(file.raw(t.name), t.end - t.begin).c_str());
        break;
      default:
        file.read_f64(t.name);  // expected to throw: no conversion for this dtype
        std::printf("F (converted?)");
    }
  } catch (const std::exception& e) {
    std::printf("X %s", one_line(e.what()).c_str());
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::printf("FILE %s\n", argv[i]);
    try {
      const rnncore::SafeTensorsFile file(argv[i]);
      std::printf("OK\n");
      for (const auto& [k, v] : file.metadata())
        std::printf("M %s %s\n", hex(k).c_str(), hex(v).c_str());
      for (const auto& t : file.tensors()) print_tensor(file, t);
    } catch (const std::exception& e) {
      std::printf("ERR %s\n", one_line(e.what()).c_str());
    }
    std::printf("END\n");
  }
  return 0;
}
