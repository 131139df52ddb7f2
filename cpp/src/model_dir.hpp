// Opening a model folder: files present, IR readable, rt_info "model_info" of the right model type and
// format version, inputs and outputs as the runtime expects. Internal header.
#pragma once
#include <map>
#include <memory>
#include <string>

#include <openvino/core/model.hpp>

namespace repmedsam::detail {

struct ModelFolder {
  std::string dir;
  std::string encoder_path;  // encoder.xml or encoder_int8.xml
  std::string decoder_path;
  std::shared_ptr<ov::Model> encoder, decoder;
  std::map<std::string, std::string> info;  // the encoder's model_info
};

// True when dir holds encoder_int8.xml (and its .bin).
bool has_int8_encoder(const std::string& dir);
// An int8 encoder is present and its export measured it within the accuracy bound (rt_info int8_accuracy_ok).
bool int8_encoder_recommended(const std::string& dir);
// encoder.xml carries model_info bf16_accuracy_ok "false": bf16 was measured outside the accuracy bound for this
// model, so `auto` must not pick it. False when the folder or file is missing (opening it reports that).
bool bf16_marked_inaccurate(const std::string& dir);
// encoder.xml's model_info[key], "" when the folder, the file or the key is missing.
std::string encoder_mark(const std::string& dir, const std::string& key);

// Reads and validates the folder; int8 selects encoder_int8.xml. Throws ModelError naming the file and
// what is wrong or missing.
ModelFolder open_model_folder(const std::string& dir, bool int8);

}  // namespace repmedsam::detail
