// Public C++ API of the training operations: embedding, linear, losses, optimizers, clipping.
#pragma once
