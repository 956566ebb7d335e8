// The cell registry: the one list of the engine's cells. The sequence driver is instantiated for
// each cell here and picks one per call (with_cell); the names that Python, the CLI, checkpoints
// and the C++ inference API use (cell_table) come from the same list.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gated.h"
#include "gru.h"
#include "lstm.h"
#include "rnn.h"

namespace rnncore::detail {

template <typename... Cells>
struct CellList {};

// Adding a cell: its header, one entry here and its CellType value (see cells/README.md).
using RegisteredCells = CellList<RnnCell<false>, RnnCell<true>, LstmCell, GruCell<true>,
                                 GruCell<false>, GatedCell<0>, GatedCell<1>, GatedCell<2>>;

// Calls f(Cell{}) for the registered cell whose kId is `id`: the driver's only dispatch on cells.
template <typename F, typename Cell, typename... Rest>
decltype(auto) with_cell_in(CellType id, F&& f, CellList<Cell, Rest...>) {
  if constexpr (sizeof...(Rest) == 0) {
    if (Cell::kId != id)
      throw std::invalid_argument("cell: unknown cell id " + std::to_string(int(id)));
    return std::forward<F>(f)(Cell{});
  } else {
    if (Cell::kId == id) return std::forward<F>(f)(Cell{});
    return with_cell_in(id, std::forward<F>(f), CellList<Rest...>{});
  }
}
template <typename F>
decltype(auto) with_cell(CellType id, F&& f) {
  return with_cell_in(id, std::forward<F>(f), RegisteredCells{});
}

template <typename... Cells>
std::vector<CellInfo> make_cell_table(CellList<Cells...>) {
  return {CellInfo{Cells::kId, Cells::kName, Cells::kTorchMode, Cells::kLayer, Cells::kLayerOption,
                   Cells::kGates, Cells::kStates, Cells::kLayerNorm}...};
}

}  // namespace rnncore::detail
