#pragma once
// Strict HTTP/1.x request-head parser and incremental chunked-body decoder. Anything a proxy and a
// backend could read differently (request smuggling) is refused: conflicting or duplicate
// Content-Length, Content-Length with Transfer-Encoding, codings other than "chunked", obs-fold,
// bare LF, whitespace before the colon. No allocation: headers land in caller-provided storage.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace waf {

#define WAF_HTTP_ERRORS(X)                \
  X(none)                                 \
  X(bad_request_line)                     \
  X(request_line_too_long)                \
  X(bad_method)                           \
  X(bad_target)                           \
  X(bad_version)                          \
  X(bare_lf)                              \
  X(obs_fold)                             \
  X(bad_header_name)                      \
  X(bad_header_value)                     \
  X(space_before_colon)                   \
  X(too_many_headers)                     \
  X(header_line_too_long)                 \
  X(head_too_large)                       \
  X(bad_content_length)                   \
  X(duplicate_content_length)             \
  X(content_length_and_transfer_encoding) \
  X(bad_transfer_encoding)                \
  X(missing_host)                         \
  X(duplicate_host)                       \
  X(duplicate_content_type)               \
  X(bad_chunk_size)                       \
  X(bad_chunk_framing)                    \
  X(chunk_extension_too_long)             \
  X(trailer_too_large)                    \
  X(body_too_large)                       \
  X(truncated)

enum class http_error : uint8_t {
#define X(e) e,
  WAF_HTTP_ERRORS(X)
#undef X
};
inline constexpr size_t http_error_count = 0
#define X(e) +1
    WAF_HTTP_ERRORS(X)
#undef X
    ;
const char* to_string(http_error e);

struct http_limits {
  uint32_t max_request_line = 8192;
  uint32_t max_header_line = 8192;
  uint32_t max_header_count = 100;
  uint32_t max_head_bytes = 32 * 1024;  // request line + headers + CRLFs; at most 64 KiB
};

struct http_header {
  std::string_view name;   // as sent (compare case-insensitively)
  std::string_view value;  // OWS trimmed
};

struct request_head {
  std::string_view request_line, method, target, path, query, protocol;
  uint8_t minor_version = 1;
  std::span<const http_header> headers;
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  std::string_view header(std::string_view name) const;  // first header of that name, or empty
};

bool iequals(std::string_view a, std::string_view b);

// Where the head ends in buf[0, n): the offset just past the blank line, 0 if not complete yet, or
// an error (bare LF, request line or a header line over the limits). `scanned` carries progress
// between calls so each byte is looked at once; `line_start` likewise.
struct head_scan_state {
  size_t scanned = 0;
  size_t line_start = 0;
  bool first_line = true;
};
http_error find_head_end(const char* buf, size_t n, const http_limits& lim, head_scan_state& st,
                         size_t& head_end);

// Parses a complete head (as found by find_head_end, ending with CRLF CRLF). Headers go to storage.
http_error parse_request_head(std::string_view head, const http_limits& lim,
                              std::span<http_header> storage, request_head& out);

// Request path normalisation, for policy path prefixes (exclusions): the path is split on '/',
// each segment percent-decoded once, "." and ".." resolved (never above the root). `;` parameters
// are either stripped from each segment before decoding, as Tomcat and Spring do (so "..;" is
// ".."), or kept as bytes of the segment name (nginx, most others); merge_slashes drops empty
// segments ("//"). Returns the length written to out, or nothing for a path no backend reads one
// way: not starting with '/', a malformed escape, an encoded '/', a '\' (raw or encoded) or NUL,
// or out too small (it needs raw.size() bytes). No allocation.
enum class path_params : uint8_t { strip, keep };
std::optional<size_t> normalize_path(std::string_view raw, path_params params, bool merge_slashes,
                                     std::span<char> out);
// norm (normalised) is prefix or lies under it: the prefix ends at a segment boundary. An empty
// prefix holds every path.
bool path_under(std::string_view norm, std::string_view prefix);

// Incremental chunked transfer-coding decoder (RFC 9112 §7.1), strict CRLF.
class chunked_decoder {
 public:
  enum class status : uint8_t { need_more, done, error };
  struct result {
    status st;
    size_t consumed;  // input bytes used
    http_error err;
  };
  // Decodes in[0, n); on_data(const char*, size_t) receives body bytes as they are found.
  template <class F>
  result feed(const char* in, size_t n, F&& on_data);
  void reset() { *this = chunked_decoder{}; }
  uint64_t body_bytes() const { return total_; }

 private:
  enum class state : uint8_t {
    size,
    size_ext,
    size_lf,
    data,
    data_cr,
    data_lf,
    trailer_start,
    trailer,
    trailer_lf,
    final_lf,
    done
  };
  state s_ = state::size;
  uint64_t remaining_ = 0;
  uint64_t total_ = 0;
  uint32_t digits_ = 0;
  uint32_t ext_len_ = 0;
  uint32_t trailer_len_ = 0;
};

template <class F>
chunked_decoder::result chunked_decoder::feed(const char* in, size_t n, F&& on_data) {
  auto hexv = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  size_t i = 0;
  while (i < n) {
    char c = in[i];
    switch (s_) {
      case state::size: {
        int h = hexv(c);
        if (h >= 0) {
          if (++digits_ > 15) return {status::error, i, http_error::bad_chunk_size};  // < 2^60
          remaining_ = remaining_ * 16 + static_cast<unsigned>(h);
          ++i;
        } else if (digits_ == 0) {
          return {status::error, i, http_error::bad_chunk_size};
        } else if (c == '\r') {
          s_ = state::size_lf;
          ++i;
        } else if (c == ';') {
          s_ = state::size_ext;
          ++i;
        } else if (c == '\n') {
          return {status::error, i, http_error::bare_lf};
        } else {
          return {status::error, i, http_error::bad_chunk_size};
        }
        break;
      }
      case state::size_ext:
        if (c == '\r') {
          s_ = state::size_lf;
        } else if (c == '\n') {
          return {status::error, i, http_error::bare_lf};
        } else if (++ext_len_ > 256) {
          return {status::error, i, http_error::chunk_extension_too_long};
        }
        ++i;
        break;
      case state::size_lf:
        if (c != '\n') return {status::error, i, http_error::bad_chunk_framing};
        ++i;
        digits_ = 0;
        ext_len_ = 0;
        s_ = remaining_ == 0 ? state::trailer_start : state::data;
        break;
      case state::data: {
        size_t take = n - i < remaining_ ? n - i : static_cast<size_t>(remaining_);
        on_data(in + i, take);
        i += take;
        remaining_ -= take;
        total_ += take;
        if (remaining_ == 0) s_ = state::data_cr;
        break;
      }
      case state::data_cr:
        if (c != '\r') return {status::error, i, http_error::bad_chunk_framing};
        ++i;
        s_ = state::data_lf;
        break;
      case state::data_lf:
        if (c != '\n') return {status::error, i, http_error::bad_chunk_framing};
        ++i;
        s_ = state::size;
        break;
      case state::trailer_start:  // a CRLF here ends the message; anything else is a trailer field
        if (c == '\r') {
          s_ = state::final_lf;
          ++i;
        } else if (c == '\n') {
          return {status::error, i, http_error::bare_lf};
        } else {
          s_ = state::trailer;
        }
        break;
      case state::trailer:
        if (++trailer_len_ > 4096) return {status::error, i, http_error::trailer_too_large};
        if (c == '\r')
          s_ = state::trailer_lf;
        else if (c == '\n')
          return {status::error, i, http_error::bare_lf};
        ++i;
        break;
      case state::trailer_lf:
        if (c != '\n') return {status::error, i, http_error::bare_lf};
        ++i;
        s_ = state::trailer_start;
        break;
      case state::final_lf:
        if (c != '\n') return {status::error, i, http_error::bare_lf};
        ++i;
        s_ = state::done;
        return {status::done, i, http_error::none};
      case state::done:
        return {status::done, i, http_error::none};
    }
  }
  return {s_ == state::done ? status::done : status::need_more, i, http_error::none};
}

// Follows an HTTP/1.x response stream (upstream to client) to find where each response ends, for
// per-request access logs. It only observes: bytes are never changed or refused. Each response's
// status and size come out as it completes; 1xx interim responses are skipped (101 ends framing:
// the connection is a tunnel from there). A body is delimited as RFC 9112 §6.3 says: none for
// HEAD, 1xx, 204 and 304; chunked; Content-Length; else until the connection closes. A stream it
// cannot follow (a status line that is not HTTP/1.x NNN, a head over 64 KiB, a bad length or
// chunk framing) makes it give up for good (`lost`). No allocation; about 200 bytes of state.
class response_framer {
 public:
  enum class event : uint8_t {
    none,    // every byte taken, the current response is not complete
    done,    // a final response completed at `used`
    tunnel,  // a 101 head completed at `used`: what follows is not HTTP
    lost,    // gave up (now or earlier): the stream cannot be followed
  };
  struct result {
    size_t used = 0;
    event ev = event::none;
    uint16_t status = 0;  // done, tunnel: the status code
    uint64_t bytes = 0;   // done, tunnel: the response's bytes, head included
  };
  static constexpr uint32_t max_head = 64 * 1024;

  // Feeds d; stops after one response completes (call again with the rest). `no_body`: the
  // request this response answers was HEAD.
  result feed(std::span<const char> d, bool no_body);
  // The connection closed: a response delimited by the close completes here (event done), any
  // other unfinished one is cut short (event lost).
  result close();
  bool following() const { return s_ != state::lost && s_ != state::tunnel; }
  bool in_response() const { return bytes_ != 0; }  // some of a response was seen

 private:
  enum class state : uint8_t {
    status_line,
    header_line,
    body_length,
    body_chunked,
    body_close,
    tunnel,
    lost
  };
  bool end_line(bool no_body, result& r);  // a complete head line in line_; false: lost
  result complete(size_t used, event ev);
  state s_ = state::status_line;
  std::array<char, 96>
      line_{};             // the start of the current head line (enough to read the fields used)
  uint32_t line_len_ = 0;  // bytes of the line seen (line_ holds the first 96)
  uint32_t head_bytes_ = 0;
  uint64_t bytes_ = 0;      // of the current response
  uint64_t remaining_ = 0;  // body_length
  uint16_t status_ = 0;
  bool has_length_ = false, chunked_ = false, saw_te_ = false, saw_cr_ = false;
  chunked_decoder chunks_;
};

}  // namespace waf
