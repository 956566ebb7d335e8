// Argument checks shared by the binding files: numpy arrays are validated at the boundary and every
// error names the argument and the expected shape.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <sstream>
#include <string>
#include <vector>

namespace rnncore::bindings {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::ostringstream os;
  os << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) os << ",";
  os << ")";
  return os.str();
}

inline py::array as_array(py::handle obj, const std::string& name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(name + ": expected a numpy array, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  return py::reinterpret_borrow<py::array>(obj);
}

// A C-contiguous numpy array of dtype T and the expected shape (a dimension of -1 matches
// anything); `expected` spells the shape for the error message. No copies are made.
template <typename T>
py::array_t<T> checked(py::handle obj, const std::string& name, const std::string& expected,
                       const std::vector<py::ssize_t>& shape, bool writable = false) {
  auto a = as_array(obj, name);
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(name + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  bool ok = static_cast<std::size_t>(a.ndim()) == shape.size();
  for (std::size_t i = 0; ok && i < shape.size(); ++i)
    ok = shape[i] < 0 || shape[i] == a.shape(static_cast<py::ssize_t>(i));
  if (!ok) throw py::value_error(name + ": expected shape " + expected + ", got " + shape_str(a));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(name + ": must be C-contiguous (use numpy.ascontiguousarray)");
  if (writable && !a.writeable()) throw py::value_error(name + ": must be writable");
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

}  // namespace rnncore::bindings
