// The registry's public face: names and shapes of the registered cells, and config validation.
#include <stdexcept>
#include <string>

#include "cells/registry.h"
#include "rnncore/recurrent.h"

namespace rnncore {

const std::vector<CellInfo>& registered_cells() {
  static const std::vector<CellInfo> table = detail::make_cell_table(detail::RegisteredCells{});
  return table;
}

const CellInfo& cell_info(CellType cell) {
  for (const auto& c : registered_cells())
    if (c.id == cell) return c;
  throw std::invalid_argument("cell: unknown cell id " + std::to_string(int(cell)));
}

const CellInfo* find_cell(const std::string& name) {
  for (const auto& c : registered_cells())
    if (name == c.name) return &c;
  return nullptr;
}

int num_gates(CellType cell) { return cell_info(cell).gates; }

const char* cell_name(CellType cell) { return cell_info(cell).torch_mode; }

void RecurrentConfig::validate() const {
  cell_info(cell);  // throws on an unknown cell
  if (input_size < 1)
    throw std::invalid_argument("input_size must be >= 1, got " + std::to_string(input_size));
  if (hidden_size < 1)
    throw std::invalid_argument("hidden_size must be >= 1, got " + std::to_string(hidden_size));
  if (num_layers < 1)
    throw std::invalid_argument("num_layers must be >= 1, got " + std::to_string(num_layers));
  if (proj_size < 0 || (proj_size > 0 && proj_size >= hidden_size))
    throw std::invalid_argument(
        "proj_size must be 0 or in [1, hidden_size=" + std::to_string(hidden_size) + "), got " +
        std::to_string(proj_size));
  if (proj_size > 0 && cell != CellType::kLstm)
    throw std::invalid_argument(std::string("proj_size is for the lstm cell only, got cell ") +
                                cell_info(cell).name);
  if (!(dropout >= 0.0 && dropout < 1.0))
    throw std::invalid_argument("dropout must be in [0, 1), got " + std::to_string(dropout));
  if (!(zoneout >= 0.0 && zoneout < 1.0))
    throw std::invalid_argument("zoneout must be in [0, 1), got " + std::to_string(zoneout));
  if (!(recurrent_dropout >= 0.0 && recurrent_dropout < 1.0))
    throw std::invalid_argument("recurrent_dropout must be in [0, 1), got " +
                                std::to_string(recurrent_dropout));
  if (proj_size > 0 && (zoneout > 0.0 || recurrent_dropout > 0.0))
    throw std::invalid_argument("zoneout and recurrent_dropout do not combine with proj_size");
  if (layer_norm && !cell_info(cell).layer_norm) {
    std::string have;
    for (const auto& c : registered_cells())
      if (c.layer_norm) have += std::string(have.empty() ? "" : ", ") + c.name;
    throw std::invalid_argument(std::string("layer_norm is for the cells ") + have + ", got cell " +
                                cell_info(cell).name);
  }
}

}  // namespace rnncore
