// Minimal .npy reader for the benchmark: C-order arrays of uint8, int64 or float64, little-endian.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace repmedsam::bench {

struct Npy {
  std::string descr;           // "|u1", "<i8", "<f8"
  std::vector<int64_t> shape;
  std::vector<char> data;
  size_t count() const {
    size_t n = 1;
    for (int64_t s : shape) n *= static_cast<size_t>(s);
    return n;
  }
};

inline Npy read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open");
  char magic[8];
  f.read(magic, 8);
  if (std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + ": not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t n;
    f.read(reinterpret_cast<char*>(&n), 2);
    header_len = n;
  } else {
    f.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, ' ');
  f.read(header.data(), header_len);
  Npy a;
  const auto field = [&](const std::string& key) {
    const auto at = header.find("'" + key + "':");
    if (at == std::string::npos) throw std::runtime_error(path + ": header lacks " + key);
    return header.substr(at + key.size() + 3);
  };
  const std::string d = field("descr");
  a.descr = d.substr(d.find('\'') + 1, 3);
  if (field("fortran_order").find("False") > 2) throw std::runtime_error(path + ": Fortran order not supported");
  std::string s = field("shape");
  s = s.substr(s.find('(') + 1, s.find(')') - s.find('(') - 1);
  for (size_t pos = 0; pos < s.size();) {
    const size_t comma = s.find(',', pos);
    const std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (item.find_first_of("0123456789") != std::string::npos) a.shape.push_back(std::stoll(item));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  const size_t item = a.descr == "|u1" ? 1 : 8;
  if (a.descr != "|u1" && a.descr != "<i8" && a.descr != "<f8") throw std::runtime_error(path + ": dtype " + a.descr);
  a.data.resize(a.count() * item);
  f.read(a.data.data(), static_cast<std::streamsize>(a.data.size()));
  if (!f) throw std::runtime_error(path + ": truncated");
  return a;
}

// Boxes as float64, whatever their stored type.
inline std::vector<double> as_doubles(const Npy& a) {
  std::vector<double> out(a.count());
  for (size_t i = 0; i < out.size(); ++i) {
    if (a.descr == "<f8") std::memcpy(&out[i], a.data.data() + 8 * i, 8);
    else if (a.descr == "<i8") {
      int64_t v;
      std::memcpy(&v, a.data.data() + 8 * i, 8);
      out[i] = static_cast<double>(v);
    } else out[i] = static_cast<uint8_t>(a.data[i]);
  }
  return out;
}

}  // namespace repmedsam::bench
