// pybind11 bindings of the training operations (rnncore/ops.h) into rnncore._core.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_ops(py::module_& m) { (void)m; }
