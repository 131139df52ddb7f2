// Error types that cross into Python: InvalidInput -> repmedsam_ov.InputError (a ValueError),
// ModelError -> repmedsam_ov.ModelError, Cancelled -> repmedsam_ov.Cancelled. Messages are written for users: what, where, and what to do.
// No OpenVINO exception text is passed on raw; see ov_guard.hpp for how OpenVINO calls are wrapped.
#pragma once
#include <stdexcept>
#include <string>

namespace repmedsam {

// The caller passed an array, box or option that breaks the documented contract.
class InvalidInput : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A model folder that cannot be used (missing, wrong type or version), or a model that failed to run.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A call stopped by Progress::cancel().
class Cancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace repmedsam
