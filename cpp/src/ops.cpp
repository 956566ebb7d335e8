// Training operations of the engine: embedding, linear, losses, optimizers, clipping (to come).
#include "rnncore/ops.h"
