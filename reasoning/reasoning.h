// reasoning — the engine that answers: images (decode, dynamic-resolution tiling, pixel
// values), prompt templates, sessions with their KV cache, sampling and generation.
//
// Thread safety: free functions are reentrant; an Engine session is used by one thread at a time.
#pragma once

#include "core/core.h"
#include "model/model.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace iris::reasoning {

// =============================================================================================
// Images

// =============================================================================================
// Prompts and generation

} // namespace iris::reasoning
