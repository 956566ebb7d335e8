// Umbrella header of the rnncore C++ library: the engine (sequence layers, training operations,
// backend settings) and inference from checkpoints saved in Python.
#pragma once

#include "rnncore/activations.h"
#include "rnncore/backend.h"
#include "rnncore/checkpoint_format.h"
#include "rnncore/device_ops.h"
#include "rnncore/inference.h"
#include "rnncore/ops.h"
#include "rnncore/recurrent.h"
#include "rnncore/safetensors.h"
#include "rnncore/version.h"
