// Fuzz target: arbitrary text as a SecRule .conf file through the importer (operators, variables,
// actions, chains, setvar macros, paranoia gates, line continuations), then through the rule
// compiler. Invariants: no crash, exception or sanitizer report; a skipped rule always says why;
// every imported rule has an id, a condition and a location; what is imported compiles or fails
// with a message that names where.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "rules/secrule.hh"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    auto d =
        std::filesystem::temp_directory_path() / ("fuzz-secrule-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    // A data file beside the .conf, for @pmFromFile.
    std::ofstream(d / "words.data") << "# comment\nalpha\nbeta gamma\n\n";
    return d.string();
  }();
  static const std::string path = dir + "/rules.conf";
  {
    std::ofstream o(path, std::ios::binary | std::ios::trunc);
    o.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto r = rules::import_secrules({path});
  if (!r) {
    if (r.error().message.empty()) std::abort();
    return 0;
  }
  for (const auto& s : r->skipped)
    if (s.reason.empty() || s.where.empty()) std::abort();  // never skipped silently
  for (const auto& rule : r->rules)
    if (rule.id == 0 || rule.conditions.empty() || rule.where.empty()) std::abort();
  auto c = waf::ruleset::compile(std::move(r->rules));
  if (!c && c.error().message.empty()) std::abort();
  return 0;
}
