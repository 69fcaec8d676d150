// Body processor selection, shared helpers and the urlencoded processor.
#include <algorithm>
#include <cstring>

#include "waf/body.hh"
#include "waf/http.hh"
#include "waf/transform.hh"

namespace waf {

const char* to_string(body_processor p) {
  switch (p) {
    case body_processor::none:
      return "";
    case body_processor::urlencoded:
      return "URLENCODED";
    case body_processor::multipart:
      return "MULTIPART";
    case body_processor::json:
      return "JSON";
  }
  return "";
}

const char* to_string(body_error e) {
  switch (e) {
#define X(n)          \
  case body_error::n: \
    return #n;
    WAF_BODY_ERRORS(X)
#undef X
  }
  return "?";
}

const char* to_string(multipart_flag f) {
  switch (f) {
#define X(e, s)           \
  case multipart_flag::e: \
    return s;
    WAF_MULTIPART_FLAGS(X)
#undef X
  }
  return "?";
}

body_processor processor_for(std::string_view ct) {
  while (!ct.empty() && (ct.front() == ' ' || ct.front() == '\t')) ct.remove_prefix(1);
  std::string_view media = ct.substr(0, ct.find(';'));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  if (iequals(media, "application/x-www-form-urlencoded")) return body_processor::urlencoded;
  if (iequals(media, "multipart/form-data")) return body_processor::multipart;
  // modsecurity.conf-recommended: REQUEST_HEADERS:Content-Type "^application/json" → JSON.
  if (media.size() >= 16 && iequals(media.substr(0, 16), "application/json"))
    return body_processor::json;
  return body_processor::none;
}

void field_buffer::value_bytes(const char* p, size_t n) {
  size_t k = std::min<size_t>(n, value_cap - value_len);
  if (k != 0) std::memcpy(value + value_len, p, k);
  value_len += static_cast<uint32_t>(k);
  if (k < n) truncated = true;
}

void urlencoded_parser::start(field_buffer* buf, const body_limits& lim) {
  buf_ = buf;
  buf_->clear();
  max_args_ = lim.max_args;
  args_ = 0;
  in_value_ = false;
  err_ = body_error::none;
}

bool urlencoded_parser::emit(body_sink& s) {
  field_buffer& b = *buf_;
  if (b.name_len != 0 || b.value_len != 0 || in_value_) {
    if (++args_ > max_args_) {
      err_ = body_error::too_many_args;
      return false;
    }
    // URL-decoding only shrinks: in place, within each buffer.
    size_t nl = apply_transform(transform::url_decode, b.name, b.name_len, b.name_len, nullptr);
    size_t vl = apply_transform(transform::url_decode, b.value, b.value_len, b.value_len, nullptr);
    s.arg({b.name, nl}, {b.value, vl}, b.truncated);
  }
  b.clear();
  in_value_ = false;
  return true;
}

bool urlencoded_parser::feed(const char* p, size_t n, body_sink& s) {
  if (err_ != body_error::none) return false;
  field_buffer& b = *buf_;
  for (size_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (c == '&') {
      if (!emit(s)) return false;
    } else if (c == '=' && !in_value_) {
      in_value_ = true;
    } else if (in_value_) {
      b.value_byte(c);
    } else {
      b.name_byte(c);
    }
  }
  return true;
}

bool urlencoded_parser::finish(body_sink& s) {
  if (err_ != body_error::none) return false;
  return emit(s);
}

}  // namespace waf
