// Device "cuda-sim": the CUDA backend's algorithm (gpu/sequence_gpu.h) on host memory and loops,
// so that it is tested against the CPU engine on machines without a GPU; and the checks of what
// the GPU backend runs, shared with the CUDA build.
#include <string>

#include "../cells/layer_norm.h"
#include "device_host.h"
#include "sequence_gpu.h"

namespace rnncore::detail {

namespace gpu {

void check_gpu_config(const RecurrentConfig& cfg, const char* device) {
  const std::string where = std::string("device '") + device + "': ";
  switch (cfg.cell) {
    case CellType::kRnnTanh:
    case CellType::kRnnRelu:
    case CellType::kLstm:
    case CellType::kGru:
    case CellType::kGruV1:
    case CellType::kGatedResidual:
    case CellType::kGatedInput:
    case CellType::kGatedForget:
      break;
    default:  // a cell added to the CPU engine and not yet to sequence_gpu.h
      throw std::invalid_argument(where + "the " + cell_info(cfg.cell).name +
                                  " cell runs on the CPU only so far");
  }
}

static_assert(kLayerNormEps == rnncore::detail::kLayerNormEps,
              "the GPU's layer norm uses the CPU engine's epsilon");

}  // namespace gpu

DeviceMemory& sim_memory() {
  static auto* memory =
      new gpu::MemoryOf<gpu::HostDevice>;  // never destroyed: arrays may outlive exit
  return *memory;
}

template <typename T>
std::unique_ptr<SequenceBackend<T>> make_sim_sequence(const RecurrentConfig& cfg,
                                                      std::vector<LaneLayout> lanes,
                                                      std::size_t num_params) {
  return std::make_unique<gpu::GpuSequence<T, gpu::HostDevice>>(cfg, std::move(lanes), num_params);
}

template std::unique_ptr<SequenceBackend<float>> make_sim_sequence<float>(const RecurrentConfig&,
                                                                          std::vector<LaneLayout>,
                                                                          std::size_t);
template std::unique_ptr<SequenceBackend<double>> make_sim_sequence<double>(const RecurrentConfig&,
                                                                            std::vector<LaneLayout>,
                                                                            std::size_t);

}  // namespace rnncore::detail
