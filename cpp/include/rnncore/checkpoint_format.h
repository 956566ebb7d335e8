// The checkpoint directory layout, declared once: the C++ loaders read these names and Python
// (rnncore.train.checkpoint, through rnncore._core.checkpoint_format()) writes them.
#pragma once

namespace rnncore::checkpoint_format {

/// checkpoint.json "format" and the "version" this library writes and reads.
inline constexpr const char* kFormat = "rnncore.checkpoint";
inline constexpr int kVersion = 1;
/// The files of a checkpoint directory.
inline constexpr const char* kMetaFile = "checkpoint.json";     // written last: marks it whole
inline constexpr const char* kModelFile = "model.safetensors";  // the model's state_dict
inline constexpr const char* kOptimizerFile = "optimizer.safetensors";  // optimizer buffers
/// __metadata__ "format" of the safetensors files.
inline constexpr const char* kTensorsFormat = "rnncore";

}  // namespace rnncore::checkpoint_format
