// Strict HTTP/1.x request-head parsing (RFC 9110/9112) with smuggling defences.
#include <algorithm>
#include <cstring>

#include "waf/http.hh"

namespace waf {

const char* to_string(http_error e) {
  switch (e) {
#define X(n)          \
  case http_error::n: \
    return #n;
    WAF_HTTP_ERRORS(X)
#undef X
  }
  return "?";
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view request_head::header(std::string_view name) const {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

namespace {

bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

}  // namespace

http_error find_head_end(const char* buf, size_t n, const http_limits& lim, head_scan_state& st,
                         size_t& head_end) {
  head_end = 0;
  size_t i = st.scanned;
  while (i < n) {
    const void* nl = std::memchr(buf + i, '\n', n - i);
    if (!nl) break;
    size_t p = static_cast<size_t>(static_cast<const char*>(nl) - buf);
    if (p == 0 || buf[p - 1] != '\r') return http_error::bare_lf;
    size_t line_len = p - 1 - st.line_start;
    if (line_len == 0) {
      if (!st.first_line) {
        head_end = p + 1;
        st.scanned = p + 1;
        return http_error::none;
      }
      // Empty lines before the request line are ignored (RFC 9112 §2.2), within the head limit.
    } else if (st.first_line) {
      if (line_len > lim.max_request_line) return http_error::request_line_too_long;
      st.first_line = false;
    } else if (line_len > lim.max_header_line) {
      return http_error::header_line_too_long;
    }
    st.line_start = p + 1;
    i = p + 1;
  }
  st.scanned = n;
  size_t partial = n - st.line_start;
  if (st.first_line && partial > lim.max_request_line + 1) return http_error::request_line_too_long;
  if (!st.first_line && partial > lim.max_header_line + 1) return http_error::header_line_too_long;
  if (n >= lim.max_head_bytes) return http_error::head_too_large;
  return http_error::none;
}

http_error parse_request_head(std::string_view head, const http_limits& lim,
                              std::span<http_header> storage, request_head& out) {
  out = request_head{};
  while (head.starts_with("\r\n")) head.remove_prefix(2);
  size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return http_error::bad_request_line;
  std::string_view line = head.substr(0, eol);
  out.request_line = line;
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return http_error::bad_request_line;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return http_error::bad_request_line;
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  out.protocol = line.substr(sp2 + 1);
  if (!is_token(out.method)) return http_error::bad_method;
  if (out.protocol == "HTTP/1.1") {
    out.minor_version = 1;
  } else if (out.protocol == "HTTP/1.0") {
    out.minor_version = 0;
  } else {
    return http_error::bad_version;
  }
  if (out.target.empty()) return http_error::bad_target;
  for (unsigned char c : out.target)
    if (c <= 0x20 || c == 0x7f) return http_error::bad_target;
  std::string_view t = out.target;
  if (t[0] == '/') {
  } else if (t == "*") {
    if (out.method != "OPTIONS") return http_error::bad_target;
  } else if (t.starts_with("http://") || t.starts_with("https://")) {
    size_t auth = t.find("//") + 2;
    size_t slash = t.find_first_of("/?", auth);
    t = slash == std::string_view::npos ? std::string_view("/") : t.substr(slash);
  } else if (out.method == "CONNECT") {
    t = {};
  } else {
    return http_error::bad_target;
  }
  size_t q = t.find('?');
  out.path = t.substr(0, q);
  if (q != std::string_view::npos) out.query = t.substr(q + 1);

  size_t count = 0;
  int hosts = 0, content_types = 0;
  bool te_seen = false;
  std::string_view rest = head.substr(eol + 2);
  while (!rest.empty()) {
    size_t e = rest.find("\r\n");
    if (e == std::string_view::npos) return http_error::bad_header_value;  // not from find_head_end
    std::string_view l = rest.substr(0, e);
    rest.remove_prefix(e + 2);
    if (l.empty()) break;
    if (l[0] == ' ' || l[0] == '\t') return http_error::obs_fold;
    size_t colon = l.find(':');
    if (colon == std::string_view::npos || colon == 0) return http_error::bad_header_name;
    std::string_view name = l.substr(0, colon);
    if (name.back() == ' ' || name.back() == '\t') return http_error::space_before_colon;
    if (!is_token(name)) return http_error::bad_header_name;
    std::string_view value = l.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    for (unsigned char c : value)
      if ((c < 0x20 && c != '\t') || c == 0x7f) return http_error::bad_header_value;
    if (count >= lim.max_header_count || count >= storage.size())
      return http_error::too_many_headers;
    storage[count++] = http_header{name, value};
    if (iequals(name, "content-length")) {
      if (out.has_content_length) return http_error::duplicate_content_length;
      if (value.empty() || value.size() > 18) return http_error::bad_content_length;
      uint64_t v = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return http_error::bad_content_length;
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      out.has_content_length = true;
      out.content_length = v;
    } else if (iequals(name, "transfer-encoding")) {
      // Only a single "chunked" is understood; anything else could be framed differently upstream.
      if (te_seen || !iequals(value, "chunked") || out.minor_version == 0)
        return http_error::bad_transfer_encoding;
      te_seen = true;
      out.chunked = true;
    } else if (iequals(name, "host")) {
      if (++hosts > 1) return http_error::duplicate_host;
    } else if (iequals(name, "content-type")) {
      // The body processor and the multipart boundary come from it: a second one could make the
      // WAF parse the body one way and the backend (which may take the last) another.
      if (++content_types > 1) return http_error::duplicate_content_type;
    }
  }
  if (out.chunked && out.has_content_length)
    return http_error::content_length_and_transfer_encoding;
  if (out.minor_version == 1 && hosts == 0) return http_error::missing_host;
  out.headers = storage.first(count);
  return http_error::none;
}

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<size_t> normalize_path(std::string_view raw, path_params params, bool merge_slashes,
                                     std::span<char> out) {
  if (raw.empty() || raw[0] != '/' || out.size() < raw.size()) return std::nullopt;
  size_t n = 0;           // out[0, n): "/seg/seg..." (empty for the root)
  bool trailing = false;  // the last segment was empty, "." or "..": the path ends with '/'
  size_t i = 1;
  for (;;) {
    size_t end = raw.find('/', i);
    if (end == std::string_view::npos) end = raw.size();
    std::string_view seg = raw.substr(i, end - i);
    if (params == path_params::strip) seg = seg.substr(0, seg.find(';'));
    // Decode the segment after '/' + what is already there; dot segments are judged decoded.
    size_t start = n;
    if (n >= out.size()) return std::nullopt;
    out[n++] = '/';
    for (size_t k = 0; k < seg.size(); ++k) {
      char c = seg[k];
      if (c == '%') {
        if (k + 2 >= seg.size()) return std::nullopt;
        int hi = hex_digit(seg[k + 1]), lo = hex_digit(seg[k + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        c = static_cast<char>(hi * 16 + lo);
        if (c == '/' || c == '\\' || c == '\0') return std::nullopt;
        k += 2;
      } else if (c == '\\' || c == '\0') {
        return std::nullopt;
      }
      out[n++] = c;
    }
    std::string_view dec(out.data() + start + 1, n - start - 1);
    trailing = false;
    if (dec.empty() && (merge_slashes || end == raw.size())) {
      n = start;  // "//" merged, or the final empty segment of "/a/"
      trailing = true;
    } else if (dec == ".") {
      n = start;
      trailing = true;
    } else if (dec == "..") {
      n = start;
      while (n > 0 && out[n - 1] != '/') --n;
      if (n > 0) --n;  // drop the previous segment with its '/'
      trailing = true;
    }
    if (end == raw.size()) break;
    i = end + 1;
  }
  if (trailing || n == 0) {
    if (n >= out.size()) return std::nullopt;
    out[n++] = '/';
  }
  return n;
}

bool path_under(std::string_view norm, std::string_view prefix) {
  if (prefix.empty()) return true;
  if (!norm.starts_with(prefix)) return false;
  return norm.size() == prefix.size() || norm[prefix.size()] == '/' || prefix.back() == '/';
}

// --- response_framer ----------------------------------------------------------------------------

response_framer::result response_framer::complete(size_t used, event ev) {
  result r;
  r.used = used;
  r.ev = ev;
  r.status = status_;
  r.bytes = bytes_;
  const state next = ev == event::tunnel ? state::tunnel : state::status_line;
  *this = response_framer{};
  s_ = next;
  return r;
}

bool response_framer::end_line(bool no_body, result& r) {
  const std::string_view line{line_.data(), std::min<size_t>(line_len_, line_.size())};
  if (s_ == state::status_line) {
    // HTTP/1.x NNN[ reason]
    if (line_len_ < 12 || !line.starts_with("HTTP/1.") || line[8] != ' ' ||
        (line.size() > 12 && line[12] != ' '))
      return false;
    uint16_t code = 0;
    for (size_t i = 9; i < 12; ++i) {
      if (line[i] < '0' || line[i] > '9') return false;
      code = static_cast<uint16_t>(code * 10 + (line[i] - '0'));
    }
    if (code < 100) return false;
    status_ = code;
    s_ = state::header_line;
    return true;
  }
  if (line_len_ == 0) {  // the blank line: the head is complete
    if (status_ == 101) {
      r = complete(0, event::tunnel);
      return true;
    }
    if (status_ < 200) {  // interim (100 Continue, 103 Early Hints): the final one follows
      const uint64_t b = bytes_;
      *this = response_framer{};
      bytes_ = b;
      return true;
    }
    if (no_body || status_ == 204 || status_ == 304) {
      r = complete(0, event::done);
      return true;
    }
    // Transfer-Encoding overrides Content-Length, wherever each came (RFC 9112 §6.3).
    if (saw_te_) {
      s_ = chunked_ ? state::body_chunked : state::body_close;
    } else if (has_length_) {
      s_ = state::body_length;
      if (remaining_ == 0) r = complete(0, event::done);
    } else {
      s_ = state::body_close;
    }
    return true;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return false;
  const std::string_view name = line.substr(0, colon);
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (iequals(name, "content-length")) {
    if (line_len_ > line_.size() || value.empty() || value.size() > 18) return false;
    uint64_t v = 0;
    for (char c : value) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (has_length_ && v != remaining_) return false;  // conflicting lengths: cannot follow
    has_length_ = true;
    remaining_ = v;
  } else if (iequals(name, "transfer-encoding")) {
    // Only "chunked" last is framed by chunks; any other coding is read until the close. A line
    // cut by line_ hides its last coding: cannot follow.
    if (line_len_ > line_.size()) return false;
    const size_t comma = value.rfind(',');
    std::string_view last = comma == std::string_view::npos ? value : value.substr(comma + 1);
    while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) last.remove_prefix(1);
    saw_te_ = true;
    chunked_ = iequals(last, "chunked");
  }
  return true;
}

response_framer::result response_framer::feed(std::span<const char> d, bool no_body) {
  result r;
  size_t i = 0;
  while (i < d.size()) {
    switch (s_) {
      case state::lost:
        r.used = d.size();
        r.ev = event::lost;
        return r;
      case state::tunnel:
        r.used = d.size();
        return r;
      case state::status_line:
      case state::header_line: {
        const char c = d[i++];
        ++bytes_;
        if (++head_bytes_ > max_head) {
          s_ = state::lost;
          continue;
        }
        if (c == '\n') {  // CRLF, or a bare LF (tolerated, as clients do)
          result done;
          if (!end_line(no_body, done)) {
            s_ = state::lost;
            continue;
          }
          line_len_ = 0;
          saw_cr_ = false;
          if (done.ev != event::none) {
            done.used = i;
            return done;
          }
          continue;
        }
        if (saw_cr_) {  // a CR inside a line: not HTTP as we follow it
          s_ = state::lost;
          continue;
        }
        if (c == '\r') {
          saw_cr_ = true;
          continue;
        }
        if (line_len_ < line_.size()) line_[line_len_] = c;
        ++line_len_;
        continue;
      }
      case state::body_length: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, d.size() - i));
        i += n;
        bytes_ += n;
        remaining_ -= n;
        if (remaining_ == 0) return complete(i, event::done);
        continue;
      }
      case state::body_chunked: {
        const auto cr = chunks_.feed(d.data() + i, d.size() - i, [](const char*, size_t) {});
        i += cr.consumed;
        bytes_ += cr.consumed;
        if (cr.st == chunked_decoder::status::done) return complete(i, event::done);
        if (cr.st == chunked_decoder::status::error) s_ = state::lost;
        continue;
      }
      case state::body_close:
        bytes_ += d.size() - i;
        i = d.size();
        continue;
    }
  }
  r.used = d.size();
  r.ev = s_ == state::lost ? event::lost : event::none;
  return r;
}

response_framer::result response_framer::close() {
  if (s_ == state::body_close) return complete(0, event::done);
  result r;
  r.ev = s_ == state::lost || (s_ != state::tunnel && in_response()) ? event::lost : event::none;
  return r;
}

}  // namespace waf
