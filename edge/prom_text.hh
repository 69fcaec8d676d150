#pragma once
// The one Prometheus text exposition writer of /metrics (version 0.0.4). Every producer writes
// through it, so the page's rules live here once: a family's HELP and TYPE once, before its
// samples; every label value escaped (service and pool names come from config, WAF error text
// from rule files: a quote or newline in them must not end the line); integers exact.
#include <charconv>
#include <concepts>
#include <cstdio>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>

namespace edge::prom_text {

// A sample's label: the name is ours (a literal), the value anything; the writer escapes it.
struct label {
  std::string_view name;
  std::string_view value;
};

// Appends `v` escaped per the exposition format: backslash, double quote and line feed.
inline void append_escaped(std::string& out, std::string_view v) {
  for (const char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// A sample value: an integer (written exact) or a floating-point number (%.17g).
template <class V>
concept number = (std::integral<V> && !std::same_as<V, bool>) || std::floating_point<V>;

class writer {
 public:
  // Starts family `name`; the samples that follow are its. HELP and TYPE are written the first
  // time a name comes; a repeat only makes it current again (the format allows one TYPE line).
  void family(std::string_view name, std::string_view type, std::string_view help) {
    name_ = name;
    if (!families_.emplace(name).second) return;
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  // One sample of the current family: `name{l1="v1",...} value`.
  template <number V>
  void sample(std::initializer_list<label> labels, V v) {
    out_ += name_;
    if (labels.size() != 0) {
      char sep = '{';
      for (const label& l : labels) {
        out_ += sep;
        out_ += l.name;
        out_ += "=\"";
        append_escaped(out_, l.value);
        out_ += '"';
        sep = ',';
      }
      out_ += '}';
    }
    out_ += ' ';
    append_value(v);
    out_ += '\n';
  }
  template <number V>
  void sample(V v) {
    sample({}, v);
  }

  const std::string& text() const { return out_; }
  std::string str() && { return std::move(out_); }

 private:
  template <std::integral V>
  void append_value(V v) {
    char num[24];
    out_.append(num, std::to_chars(num, num + sizeof num, v).ptr);
  }
  void append_value(double v) {
    char num[32];
    out_.append(num, static_cast<size_t>(std::snprintf(num, sizeof num, "%.17g", v)));
  }

  std::string out_;
  std::string name_;  // the current family
  std::set<std::string, std::less<>> families_;
};

}  // namespace edge::prom_text
