// Int8 products for the recurrent layers' int8 inference (Recurrent::set_int8_inference): weights
// quantized per output row to int8, each input vector quantized on the fly to 7-bit unsigned
// values, products accumulated exactly in int32 and scaled back to float. PyTorch's
// quantize_dynamic does the same (int8 weights, activations with a reduced range), so the results
// are comparable; what it buys is four times fewer weight bytes and four times more
// multiply-adds per instruction than float32 (AVX2's vpmaddubsw).
#pragma once

#include <cstddef>
#include <cstdint>

namespace rnncore::detail {

/// Quantized input values are in [1, 127] around this zero point (x ≈ (q - 64) · scale): seven
/// bits, so that vpmaddubsw's sum of two u8·s8 products never saturates int16.
constexpr int kQuantZeroPoint = 64;

/// Inputs per group: each output's weights for 4 consecutive inputs are 4 adjacent bytes.
constexpr std::ptrdiff_t kQuantGroup = 4;

/// k rounded up to a whole number of groups: the length of a quantized input vector.
inline std::ptrdiff_t quant_padded(std::ptrdiff_t k) {
  return (k + kQuantGroup - 1) / kQuantGroup * kQuantGroup;
}

/// Bytes pack_quant_panels writes for m outputs of k inputs.
std::size_t quant_panel_bytes(std::ptrdiff_t m, std::ptrdiff_t k);

/// Quantizes W[0:m, 0:k] (row-major, row stride ldw: m outputs of k inputs, PyTorch's layout) to
/// int8 per output row (scale[i] = max_j |W[i, j]| / 127, zero rows get scale 0) and packs it
/// into panels of up to 64 outputs for quant_gemv; rowsum[i] = Σ_j q[i, j] (the zero point's
/// correction). out holds quant_panel_bytes(m, k) bytes; scale and rowsum m values each.
void pack_quant_panels(std::ptrdiff_t m, std::ptrdiff_t k, const float* W, std::ptrdiff_t ldw,
                       std::int8_t* out, float* scale, std::int32_t* rowsum);

/// Quantizes x[0:k] to out[0:quant_padded(k)] (7-bit values around kQuantZeroPoint, the padding
/// at the zero point) and returns its scale (max |x| / 63; 0 for an all-zero x).
float quantize_vector(std::ptrdiff_t k, const float* x, std::uint8_t* out);

/// y[0:m] (+)= W · x for W packed by pack_quant_panels(m, k, ...) and x quantized by
/// quantize_vector (xq, xscale): y_i = scale_i · xscale · Σ_j q_ij (xq_j - 64). AVX2 when the CPU
/// has it (chosen once, at run time), else portable code with the same results (the integer sums
/// are exact; only the final float scaling rounds).
void quant_gemv(std::ptrdiff_t m, std::ptrdiff_t k, const std::int8_t* packed, const float* scale,
                const std::int32_t* rowsum, const std::uint8_t* xq, float xscale, float* y,
                bool accumulate);

}  // namespace rnncore::detail
