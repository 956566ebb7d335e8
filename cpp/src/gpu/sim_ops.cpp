// Device "cuda-sim"'s training operations: the GPU ops (gpu/ops_gpu.h) over host memory and loops.
#include "device_host.h"
#include "ops_gpu.h"

namespace rnncore::detail::gpu {

template <typename T>
DeviceOps<T>& sim_ops() {
  static auto* ops = new OpsOf<T, HostDevice>;  // never destroyed, like sim_memory()
  return *ops;
}
template DeviceOps<float>& sim_ops<float>();
template DeviceOps<double>& sim_ops<double>();

}  // namespace rnncore::detail::gpu
