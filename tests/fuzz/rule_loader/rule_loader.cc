// Fuzz target: arbitrary text as a YAML rule file, a YAML policy and a SecRule file. The first
// byte picks which. Invariants: no crash or exception escapes; a rule file that loads either
// compiles or fails with a located error.
#include <unistd.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "rules/loader.hh"
#include "rules/secrule.hh"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto r = rules::parse_rule_file(text, "fuzz.yaml");
      if (r) {
        auto c = waf::ruleset::compile(std::move(*r));
        if (!c && c.error().message.empty()) std::abort();
      } else if (r.error().where.empty()) {
        std::abort();  // every rule-file error names where it is
      }
      break;
    }
    case 1: {
      try {
        YAML::Node n = YAML::Load(text);
        (void)rules::parse_policy(n, "fuzz.yaml");
      } catch (const YAML::Exception&) {
        // a syntax error before parse_policy: yaml-cpp's own, not ours
      }
      break;
    }
    case 2: {
      static const std::string path = (std::filesystem::temp_directory_path() /
                                       ("fuzz-secrule-" + std::to_string(::getpid()) + ".conf"))
                                          .string();
      {
        std::ofstream o(path, std::ios::binary | std::ios::trunc);
        o << text;
      }
      auto r = rules::import_secrules({path});
      if (r) {
        for (const auto& s : r->skipped)
          if (s.reason.empty()) std::abort();  // never skipped silently
        // What the importer accepts must compile (or fail with a message).
        auto c = waf::ruleset::compile(std::move(r->rules));
        if (!c && c.error().message.empty()) std::abort();
      }
      std::remove(path.c_str());
      break;
    }
  }
  return 0;
}
