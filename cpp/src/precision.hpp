// The precision a Segmenter runs at: parsing, the CPU's bf16 units, and what "auto" resolves to. Internal header.
#pragma once
#include <string>

#include <openvino/runtime/core.hpp>

#include "repmedsam/info.hpp"

namespace repmedsam::detail {

// `requested`, with "auto" resolved for this CPU and model folder; InvalidInput for bf16 without CPU support.
Precision resolve_precision(ov::Core& core, Precision requested, const std::string& dir);

}  // namespace repmedsam::detail
