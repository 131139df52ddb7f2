#include "model_dir.hpp"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <vector>

#include <openvino/frontend/manager.hpp>

#include "ov_guard.hpp"
#include "repmedsam/errors.hpp"

namespace fs = std::filesystem;

namespace repmedsam::detail {
namespace {

// Box-prompted SAMs with the same folder contract: Rep-MedSAM, and LiteMedSAM (its teacher, TinyViT encoder).
const char* const kModelTypes[] = {"rep_medsam", "litemedsam"};
constexpr const char* kFormatVersion = "1";
constexpr const char* kExportHint = "Export a model folder with `repmedsam-ov export CHECKPOINT -o MODEL_DIR`.";

std::string listing(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  if (names.empty()) return "the folder is empty";
  std::string out = "found: ";
  for (size_t i = 0; i < names.size() && i < 8; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 8) out += ", ...";
  return out;
}

void require_files(const fs::path& dir, const std::string& stem) {
  for (const char* ext : {".xml", ".bin"}) {
    const fs::path file = dir / (stem + ext);
    if (!fs::is_regular_file(file))
      throw ModelError(dir.string() + ": missing " + stem + ext + " (" + listing(dir) + "). A model folder holds " +
                       "encoder.xml/.bin and decoder.xml/.bin. " + kExportHint);
  }
}

std::map<std::string, std::string> read_info(const ov::Model& model, const std::string& file) {
  static const char* keys[] = {"model_type", "format_version", "image_size", "embedding_shape",
                               "weight_precision", "int8", "int8_accuracy_ok", "bf16_accuracy_ok", "checkpoint_sha256",
                               "exporter_version", "auto_amx", "auto_avx512_bf16", "auto_other", "auto_basis"};
  std::map<std::string, std::string> info;
  const bool any = guarded(file + ": cannot read its metadata", [&] { return model.has_rt_info("model_info"); });
  if (!any)
    throw ModelError(file + ": no 'model_info' metadata, so it is not a repmedsam-ov model. " + kExportHint);
  for (const char* key : keys) {
    const bool has = guarded(file + ": cannot read its metadata", [&] { return model.has_rt_info("model_info", key); });
    if (!has) continue;
    info[key] = guarded(file + ": model_info['" + std::string(key) + "'] is not text",
                        [&] { return model.get_rt_info<std::string>("model_info", key); });
  }
  return info;
}

void expect_field(const std::map<std::string, std::string>& info, const std::string& file, const std::string& key,
                  const std::string& expected, const std::string& hint) {
  const auto it = info.find(key);
  if (it == info.end())
    throw ModelError(file + ": model_info lacks '" + key + "' (expected '" + expected + "'). " + hint);
  if (it->second != expected)
    throw ModelError(file + ": model_info " + key + " is '" + it->second + "', expected '" + expected + "'. " + hint);
}

void validate_info(const std::map<std::string, std::string>& info, const std::string& file) {
  const auto type = info.find("model_type");
  const bool known = type != info.end() && std::find(std::begin(kModelTypes), std::end(kModelTypes),
                                                     type->second) != std::end(kModelTypes);
  if (!known)  // an unknown type is reported by expect_field, which words both the missing and the odd value
    expect_field(info, file, "model_type", "rep_medsam' or 'litemedsam",
                 "This folder holds another kind of model; repmedsam-ov runs Rep-MedSAM and LiteMedSAM folders.");
  expect_field(info, file, "format_version", kFormatVersion,
               "This runtime reads model format 1; export the model again with this version of repmedsam-ov.");
  expect_field(info, file, "image_size", "256", "Rep-MedSAM models take 256x256 inputs.");
  expect_field(info, file, "embedding_shape", "256,64,64", "Rep-MedSAM embeddings are 256x64x64.");
}

std::string shape_text(const ov::PartialShape& s) { return s.to_string(); }

// Each port: a tensor name the runtime uses and the shape it must be compatible with.
void expect_port(const ov::Output<const ov::Node>* port, const std::string& file, const std::string& kind,
                 const std::string& name, const ov::PartialShape& shape) {
  if (!port) throw ModelError(file + ": no " + kind + " named '" + name + "'. " + kExportHint);
  if (!port->get_partial_shape().compatible(shape))
    throw ModelError(file + ": " + kind + " '" + name + "' has shape " + shape_text(port->get_partial_shape()) +
                     ", expected " + shape_text(shape) + ". " + kExportHint);
}

const ov::Output<const ov::Node>* find_port(const std::vector<ov::Output<const ov::Node>>& ports,
                                            const std::string& name) {
  for (const auto& p : ports)
    if (p.get_names().count(name)) return &p;
  return nullptr;
}

void validate_ports(const std::shared_ptr<ov::Model>& model, const std::string& file, bool encoder) {
  const std::shared_ptr<const ov::Model> m = model;
  const auto inputs = m->inputs();
  const auto outputs = m->outputs();
  const ov::Dimension any = ov::Dimension::dynamic();
  if (encoder) {
    expect_port(find_port(inputs, "image"), file, "input", "image", {any, 3, 256, 256});
    expect_port(find_port(outputs, "embedding"), file, "output", "embedding", {any, 256, 64, 64});
    return;
  }
  expect_port(find_port(inputs, "embedding"), file, "input", "embedding", {1, 256, 64, 64});
  expect_port(find_port(inputs, "boxes"), file, "input", "boxes", {any, 4});
  const auto* logits = find_port(outputs, "low_res_logits");
  if (!logits) throw ModelError(file + ": no output named 'low_res_logits'. " + kExportHint);
  const auto& ls = logits->get_partial_shape();
  if (!ls.compatible(ov::PartialShape{any, 256, 256}) && !ls.compatible(ov::PartialShape{any, 1, 256, 256}))
    throw ModelError(file + ": output 'low_res_logits' has shape " + shape_text(ls) +
                     ", expected [?,256,256] or [?,1,256,256]. " + kExportHint);
  if (!find_port(outputs, "iou")) throw ModelError(file + ": no output named 'iou'. " + kExportHint);
}

// The IR frontend only: Core::read_model tries every frontend on a malformed .xml, and the TensorFlow one
// prints protobuf/abseil noise on stderr before the error reaches the user.
std::shared_ptr<ov::Model> read(const fs::path& xml) {
  return guarded(xml.string() + ": cannot be read as an OpenVINO IR", [&] {
    ov::frontend::FrontEndManager manager;
    const auto frontend = manager.load_by_framework("ir");
    fs::path bin = xml;
    bin.replace_extension(".bin");
    return frontend->convert(frontend->load(xml.string(), bin.string(), true));  // true: mmap, as read_model
  });
}

}  // namespace

bool has_int8_encoder(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "encoder_int8.xml", ec) &&
         fs::is_regular_file(fs::path(dir) / "encoder_int8.bin", ec);
}

bool int8_encoder_recommended(const std::string& dir) {
  if (!has_int8_encoder(dir)) return false;
  // the exporter marks an int8 encoder that failed its accuracy bound; `auto` must not pick that one
  const auto model = read(fs::path(dir) / "encoder_int8.xml");
  const auto info = read_info(*model, (fs::path(dir) / "encoder_int8.xml").string());
  const auto it = info.find("int8_accuracy_ok");
  return it != info.end() && it->second == "true";
}

std::string encoder_mark(const std::string& dir, const std::string& key) {
  std::error_code ec;
  const fs::path xml = fs::path(dir) / "encoder.xml";
  if (dir.empty() || !fs::is_regular_file(xml, ec)) return "";
  // `auto` asks for several marks, and reading the IR takes ~0.05 s: the last file's marks are kept, keyed by
  // its path, size and modification time, so an edited file is read again.
  static std::mutex mutex;
  static std::string cached_file;
  static std::map<std::string, std::string> cached;
  const std::string file = xml.string() + "|" + std::to_string(fs::file_size(xml, ec)) + "|" +
                           std::to_string(fs::last_write_time(xml, ec).time_since_epoch().count());
  std::map<std::string, std::string> info;
  bool hit = false;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (file == cached_file) info = cached, hit = true;
  }
  if (!hit) {
    info = read_info(*read(xml), xml.string());
    std::lock_guard<std::mutex> lock(mutex);
    cached_file = file, cached = info;
  }
  const auto it = info.find(key);
  return it == info.end() ? "" : it->second;
}

bool bf16_marked_inaccurate(const std::string& dir) { return encoder_mark(dir, "bf16_accuracy_ok") == "false"; }

ModelFolder open_model_folder(const std::string& dir_name, bool int8) {
  const fs::path dir(dir_name);
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw ModelError(dir_name + ": no such model folder. " + kExportHint);
  if (!fs::is_directory(dir, ec))
    throw ModelError(dir_name + ": is a file, expected a model folder with encoder.xml and decoder.xml. " + kExportHint);
  const std::string encoder_stem = int8 ? "encoder_int8" : "encoder";
  if (int8 && !has_int8_encoder(dir_name))
    throw ModelError(dir_name + ": precision 'int8' needs encoder_int8.xml/.bin, which this folder lacks (" +
                     listing(dir) + "). Export with `repmedsam-ov export --int8`, or choose precision 'f32'.");
  require_files(dir, encoder_stem);
  require_files(dir, "decoder");

  ModelFolder f;
  f.dir = dir_name;
  f.encoder_path = (dir / (encoder_stem + ".xml")).string();
  f.decoder_path = (dir / "decoder.xml").string();
  f.encoder = read(f.encoder_path);
  f.decoder = read(f.decoder_path);
  f.info = read_info(*f.encoder, f.encoder_path);
  const auto decoder_info = read_info(*f.decoder, f.decoder_path);
  validate_info(f.info, f.encoder_path);
  validate_info(decoder_info, f.decoder_path);
  const auto a = f.info.find("checkpoint_sha256");
  const auto b = decoder_info.find("checkpoint_sha256");
  if (a != f.info.end() && b != decoder_info.end() && a->second != b->second)
    throw ModelError(dir_name + ": " + encoder_stem + ".xml and decoder.xml come from different checkpoints (sha256 " +
                     a->second.substr(0, 12) + "... and " + b->second.substr(0, 12) +
                     "...). Export both again from one checkpoint.");
  validate_ports(f.encoder, f.encoder_path, true);
  validate_ports(f.decoder, f.decoder_path, false);
  return f;
}

}  // namespace repmedsam::detail
