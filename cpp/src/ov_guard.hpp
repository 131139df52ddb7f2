// Every OpenVINO call runs inside guarded(): an OpenVINO exception becomes a ModelError whose message
// starts with what we were doing, followed by the one informative line of OpenVINO's text (its first
// lines are source locations, useless to a user). Internal header.
#pragma once
#include <exception>
#include <sstream>
#include <string>

#include "repmedsam/errors.hpp"

namespace repmedsam::detail {

// The first line of an OpenVINO message that is not a source location, trimmed to 300 characters.
inline std::string brief_reason(const char* what) {
  std::istringstream lines(what ? what : "");
  std::string line;
  while (std::getline(lines, line)) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    line = line.substr(start);
    if (line.rfind("Exception from ", 0) == 0 || line.rfind("Check '", 0) == 0) continue;
    if (line.size() > 300) line = line.substr(0, 297) + "...";
    return line;
  }
  return "no details";
}

template <class Fn>
auto guarded(const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const InvalidInput&) {
    throw;
  } catch (const ModelError&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw ModelError(what + ": out of memory.");
  } catch (const std::exception& e) {
    throw ModelError(what + " (" + brief_reason(e.what()) + ").");
  }
}

}  // namespace repmedsam::detail
