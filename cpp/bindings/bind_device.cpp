// pybind11 bindings of GPU device memory (rnncore/backend.h's device_* calls) and of DLPack, the
// pieces under rnncore.cuda.DeviceArray: an owning buffer, copies, the batch-first transpose, and
// capsules in both directions. Addresses cross as integers; rnncore/cuda.py checks every size and
// bound before it calls these (they are private: _core).
#include <Python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dlpack.h"
#include "rnncore/backend.h"

namespace py = pybind11;
namespace dl = rnncore::bindings::dlpack;

namespace {

// Memory of one device, owned (freed by the device's allocator with the last reference).
struct DeviceBuffer {
  rnncore::Device device;
  std::shared_ptr<void> memory;
  std::size_t nbytes;
};

constexpr const char* kLegacyName = "dltensor";
constexpr const char* kVersionedName = "dltensor_versioned";

// What a capsule we made keeps alive: the Python object owning the memory, and the shape.
struct Exported {
  PyObject* owner;
  std::vector<std::int64_t> shape;
  dl::ManagedTensor legacy{};
  dl::ManagedTensorVersioned versioned{};
};

// The consumer is done (or the capsule was never consumed): release the owner, with the GIL (a
// consumer may call the deleter from any thread).
void release_exported(Exported* e) {
  PyGILState_STATE gil = PyGILState_Ensure();
  Py_DECREF(e->owner);
  PyGILState_Release(gil);
  delete e;
}
void delete_legacy(dl::ManagedTensor* t) {
  release_exported(static_cast<Exported*>(t->manager_ctx));
}
void delete_versioned(dl::ManagedTensorVersioned* t) {
  release_exported(static_cast<Exported*>(t->manager_ctx));
}

// A capsule nobody consumed (still named "dltensor*") frees what it holds.
void capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, kVersionedName)) {
    auto* t =
        static_cast<dl::ManagedTensorVersioned*>(PyCapsule_GetPointer(capsule, kVersionedName));
    t->deleter(t);
  } else if (PyCapsule_IsValid(capsule, kLegacyName)) {
    auto* t = static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(capsule, kLegacyName));
    t->deleter(t);
  }
}

// A DLPack capsule over `address` (C order, `shape`, elements of `kind` "f" (float) or "i"
// (signed integer) and `bits`) on (device_type, id), keeping `owner` alive until the consumer's
// deleter runs.
py::object make_capsule(py::object owner, std::uintptr_t address, std::vector<std::int64_t> shape,
                        int bits, int device_type, int device_id, bool versioned, bool readonly,
                        const std::string& kind) {
  if (bits != 32 && bits != 64) throw std::invalid_argument("dlpack: bits must be 32 or 64");
  if (kind != "f" && kind != "i") throw std::invalid_argument("dlpack: kind must be 'f' or 'i'");
  auto* e = new Exported{owner.ptr(), std::move(shape)};
  Py_INCREF(e->owner);
  dl::Tensor t{};
  t.data = reinterpret_cast<void*>(address);
  t.device = {device_type, device_id};
  t.ndim = std::int32_t(e->shape.size());
  t.dtype = {kind == "f" ? dl::kFloat : dl::kInt, std::uint8_t(bits), 1};
  t.shape = e->shape.data();
  t.strides = nullptr;  // C order
  t.byte_offset = 0;
  PyObject* capsule = nullptr;
  if (versioned) {
    e->versioned = {{1, 0}, e, &delete_versioned, readonly ? dl::kFlagReadOnly : 0, t};
    capsule = PyCapsule_New(&e->versioned, kVersionedName, &capsule_destructor);
  } else {
    e->legacy = {t, e, &delete_legacy};
    capsule = PyCapsule_New(&e->legacy, kLegacyName, &capsule_destructor);
  }
  if (!capsule) {
    release_exported(e);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(capsule);
}

// Reads a producer's capsule without consuming it (the caller keeps the capsule alive while it
// uses the memory; its own destructor then frees it): (address, shape, strides or None in
// elements, kind "f"/"i"/"u"/"b"/"c"/other, bits, lanes, device_type, device_id, readonly).
py::tuple view_capsule(py::handle capsule) {
  const dl::Tensor* t = nullptr;
  bool readonly = false;
  if (PyCapsule_IsValid(capsule.ptr(), kVersionedName)) {
    auto* m = static_cast<dl::ManagedTensorVersioned*>(
        PyCapsule_GetPointer(capsule.ptr(), kVersionedName));
    if (m->version.major != 1)
      throw std::invalid_argument("DLPack: version " + std::to_string(m->version.major) +
                                  ".x is not supported (1.x is)");
    t = &m->dl_tensor;
    readonly = (m->flags & dl::kFlagReadOnly) != 0;
  } else if (PyCapsule_IsValid(capsule.ptr(), kLegacyName)) {
    t = &static_cast<dl::ManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), kLegacyName))
             ->dl_tensor;
  } else {
    throw std::invalid_argument("not an unconsumed DLPack capsule (\"dltensor\")");
  }
  py::list shape, strides;
  for (int i = 0; i < t->ndim; ++i) {
    shape.append(t->shape[i]);
    if (t->strides) strides.append(t->strides[i]);
  }
  const char* kinds[] = {"i", "u", "f", "?", "bf", "c", "b"};
  const std::string kind = t->dtype.code <= dl::kBool ? kinds[t->dtype.code] : "?";
  const auto address = reinterpret_cast<std::uintptr_t>(t->data) + t->byte_offset;
  return py::make_tuple(address, py::tuple(shape),
                        t->strides ? py::object(py::tuple(strides)) : py::object(py::none()), kind,
                        int(t->dtype.bits), int(t->dtype.lanes), int(t->device.device_type),
                        int(t->device.device_id), readonly);
}

}  // namespace

void bind_device(py::module_& m) {
  py::class_<DeviceBuffer, std::shared_ptr<DeviceBuffer>>(
      m, "DeviceBuffer", "nbytes of a GPU device's memory (contents undefined until written).")
      .def(py::init([](const std::string& device, std::size_t nbytes) {
             const rnncore::Device d = rnncore::parse_device(device);
             return std::make_shared<DeviceBuffer>(
                 DeviceBuffer{d, rnncore::device_alloc(d, nbytes), nbytes});
           }),
           py::arg("device"), py::arg("nbytes"))
      .def_property_readonly(
          "ptr",
          [](const DeviceBuffer& b) { return reinterpret_cast<std::uintptr_t>(b.memory.get()); })
      .def_property_readonly("nbytes", [](const DeviceBuffer& b) { return b.nbytes; })
      .def_property_readonly("device",
                             [](const DeviceBuffer& b) { return rnncore::device_name(b.device); });
  m.def(
      "device_copy",
      [](const std::string& device, std::uintptr_t dst, std::uintptr_t src, std::size_t nbytes,
         int kind) {
        if (kind < 0 || kind > 2)
          throw std::invalid_argument("device_copy: kind must be 0, 1 or 2");
        const rnncore::Device d = rnncore::parse_device(device);
        py::gil_scoped_release release;
        rnncore::device_copy(d, reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                             nbytes, static_cast<rnncore::CopyKind>(kind));
      },
      py::arg("device"), py::arg("dst"), py::arg("src"), py::arg("nbytes"), py::arg("kind"),
      "Copies nbytes: kind 0 host to device, 1 device to host, 2 device to device.");
  m.def(
      "device_zero",
      [](const std::string& device, std::uintptr_t p, std::size_t nbytes) {
        const rnncore::Device d = rnncore::parse_device(device);
        py::gil_scoped_release release;
        rnncore::device_zero(d, reinterpret_cast<void*>(p), nbytes);
      },
      py::arg("device"), py::arg("address"), py::arg("nbytes"), "Zeroes nbytes of device memory.");
  m.def(
      "device_swap01",
      [](const std::string& device, std::uintptr_t dst, std::uintptr_t src, std::int64_t n0,
         std::int64_t n1, std::int64_t n2, int elem_bytes) {
        const rnncore::Device d = rnncore::parse_device(device);
        py::gil_scoped_release release;
        rnncore::device_swap01(d, reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src),
                               n0, n1, n2, elem_bytes);
      },
      py::arg("device"), py::arg("dst"), py::arg("src"), py::arg("n0"), py::arg("n1"),
      py::arg("n2"), py::arg("elem_bytes"), "dst[j, i, :] = src[i, j, :] of a [n0, n1, n2] array.");
  m.def(
      "device_synchronize",
      [](const std::string& device, std::uintptr_t stream) {
        const rnncore::Device d = rnncore::parse_device(device);
        py::gil_scoped_release release;
        rnncore::device_synchronize(d, stream);
      },
      py::arg("device"), py::arg("stream") = 0,
      "Waits for the device's work so far (stream 0), or for one CUDA stream's.");
  m.def("dlpack_capsule", &make_capsule, py::arg("owner"), py::arg("address"), py::arg("shape"),
        py::arg("bits"), py::arg("device_type"), py::arg("device_id"), py::arg("versioned"),
        py::arg("readonly") = false, py::arg("kind") = "f",
        "A DLPack capsule over C-order floats at address, keeping owner alive until consumed.");
  m.def("dlpack_view", &view_capsule, py::arg("capsule"),
        "(address, shape, strides|None, kind, bits, lanes, device_type, device_id, readonly) of "
        "an unconsumed DLPack capsule, left unconsumed.");
}
