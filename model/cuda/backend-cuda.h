// The CUDA backend (private to the model module): the seam of model/backend.h on an NVIDIA GPU.
// Weights and the KV cache live in device memory (wrap() copies host bytes to the device once);
// every operation is queued in order on one stream per device, and download() / synchronize()
// wait for it. Products go to cuBLAS in f32 (block-format weights are dequantized to f32 panels
// first), everything else to the kernels of model/cuda/*.cu, which transcribe the CPU reference
// (model/cpu/ops.h). Only built where nvcc is found (IRIS_HAVE_CUDA); see docs/backends.md.
#pragma once

#include "model/backend.h"

namespace iris::model {

// GPUs this process can use: 0 when the driver or a device is missing (never throws).
int cuda_device_count();
// The backend of GPU `device` (0 ≤ device < cuda_device_count()), made on first use and never
// destroyed. Throws Error(invalid_argument) for another index, or the CUDA error that stopped
// its stream or cuBLAS handle from being made.
Backend& cuda_backend(int device);

} // namespace iris::model
