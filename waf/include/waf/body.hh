#pragma once
// Request body processors, chosen by Content-Type as ModSecurity v3 chooses them: URLENCODED
// (application/x-www-form-urlencoded), MULTIPART (multipart/form-data) and JSON (application/json,
// as modsecurity.conf-recommended's rule 200001 switches it on). Each one is a streaming state
// machine: bytes arrive in segments cut anywhere, and complete fields go to a body_sink as soon as
// they end (an argument, a file, a part header). Nothing is buffered but the field being collected,
// in a buffer the owner gives (field_buffer); every length and count is bounded by body_limits.
//
// Data path: feed() and finish() never allocate, throw or log.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace waf {

enum class body_processor : uint8_t { none, urlencoded, multipart, json };
// ModSecurity's REQBODY_PROCESSOR value ("URLENCODED", "MULTIPART", "JSON"; "" for none).
const char* to_string(body_processor p);
// The processor for a Content-Type header value (media type compared case-insensitively).
body_processor processor_for(std::string_view content_type);

// Why a body could not be parsed. Each is counted (worker_stats::body_errors) and sets
// ModSecurity's REQBODY_ERROR / REQBODY_PROCESSOR_ERROR; the policy's on_body_error chooses block
// (400) or raw inspection of the rest of the body.
#define WAF_BODY_ERRORS(X)            \
  X(none)                             \
  X(too_many_args)                    \
  X(json_syntax)                      \
  X(json_depth)                       \
  X(json_truncated)                   \
  X(multipart_no_boundary)            \
  X(multipart_bad_boundary)           \
  X(multipart_boundary_line)          \
  X(multipart_header_line)            \
  X(multipart_headers_too_large)      \
  X(multipart_no_disposition)         \
  X(multipart_bad_disposition)        \
  X(multipart_final_boundary_missing) \
  X(multipart_too_many_files)
enum class body_error : uint8_t {
#define X(e) e,
  WAF_BODY_ERRORS(X)
#undef X
};
inline constexpr size_t body_error_count = 0
#define X(e) +1
    WAF_BODY_ERRORS(X)
#undef X
    ;
const char* to_string(body_error e);

// ModSecurity's multipart flags (each a variable of that name, upper case, 0 or 1). All of them
// but unmatched_boundary make MULTIPART_STRICT_ERROR, as in libmodsecurity3.
#define WAF_MULTIPART_FLAGS(X)                                  \
  X(boundary_quoted, "multipart_boundary_quoted")               \
  X(boundary_whitespace, "multipart_boundary_whitespace")       \
  X(data_before, "multipart_data_before")                       \
  X(data_after, "multipart_data_after")                         \
  X(header_folding, "multipart_header_folding")                 \
  X(lf_line, "multipart_lf_line")                               \
  X(missing_semicolon, "multipart_missing_semicolon")           \
  X(invalid_quoting, "multipart_invalid_quoting")               \
  X(invalid_part, "multipart_invalid_part")                     \
  X(invalid_header_folding, "multipart_invalid_header_folding") \
  X(file_limit_exceeded, "multipart_file_limit_exceeded")       \
  X(unmatched_boundary, "multipart_unmatched_boundary")
enum class multipart_flag : uint8_t {
#define X(e, s) e,
  WAF_MULTIPART_FLAGS(X)
#undef X
};
inline constexpr size_t multipart_flag_count = 0
#define X(e, s) +1
    WAF_MULTIPART_FLAGS(X)
#undef X
    ;
const char* to_string(multipart_flag f);  // the variable name, lower case
inline constexpr uint32_t flag_bit(multipart_flag f) {
  return 1u << static_cast<unsigned>(f);
}
inline constexpr uint32_t strict_error_mask =
    ((1u << multipart_flag_count) - 1) & ~flag_bit(multipart_flag::unmatched_boundary);

struct body_limits {
  uint32_t max_name_bytes = 1024;  // argument name (a JSON path); longer is truncated (counted)
  uint32_t max_value_bytes = 64 * 1024;  // argument value; longer is truncated (counted)
  uint32_t max_args = 1000;              // arguments per body (ModSecurity's SecArgumentsLimit)
  uint32_t max_json_depth = 128;         // nesting of JSON objects/arrays (at most json_max_depth)
  uint32_t max_files = 100;  // file parts (SecUploadFileLimit); one more: file_limit_exceeded and
                             // the body error multipart_too_many_files (parsing stops there)
  static constexpr uint32_t json_max_depth = 256;
};

// Where a processor collects the field it is reading. Owned by the caller (per flow).
struct field_buffer {
  char* name = nullptr;
  char* value = nullptr;
  uint32_t name_cap = 0, value_cap = 0;
  uint32_t name_len = 0, value_len = 0;
  bool truncated = false;  // this field lost bytes to a cap
  void clear() {
    name_len = value_len = 0;
    truncated = false;
  }
  void name_byte(char c) {
    name_len < name_cap ? void(name[name_len++] = c) : void(truncated = true);
  }
  void value_byte(char c) {
    value_len < value_cap ? void(value[value_len++] = c) : void(truncated = true);
  }
  void value_bytes(const char* p, size_t n);
  std::string_view name_view() const { return {name, name_len}; }
  std::string_view value_view() const { return {value, value_len}; }
};

// Receives complete fields. Values are decoded (URL-decoding for urlencoded, escapes for JSON).
class body_sink {
 public:
  virtual void arg(std::string_view name, std::string_view value, bool truncated) = 0;
  // A multipart file part: its field name, the client's file name and the content's size.
  virtual void file(std::string_view field, std::string_view filename, uint64_t size) = 0;
  // A multipart part header line, as sent (folded lines joined), keyed by the part's name.
  virtual void part_header(std::string_view part, std::string_view line) = 0;

 protected:
  ~body_sink() = default;
};

// application/x-www-form-urlencoded: name=value pairs split on '&', URL-decoded ('+' is a space).
class urlencoded_parser {
 public:
  void start(field_buffer* buf, const body_limits& lim);
  bool feed(const char* p, size_t n, body_sink& s);  // false: error()
  bool finish(body_sink& s);
  body_error error() const { return err_; }
  uint32_t args() const { return args_; }

 private:
  bool emit(body_sink& s);
  field_buffer* buf_ = nullptr;
  uint32_t max_args_ = 0, args_ = 0;
  bool in_value_ = false;
  body_error err_ = body_error::none;
};

// multipart/form-data (RFC 7578 / 2046) with ModSecurity's strictness flags.
class multipart_parser {
 public:
  // content_type: the request's Content-Type value (the boundary comes from it). false: error().
  bool start(std::string_view content_type, field_buffer* buf, const body_limits& lim);
  bool feed(const char* p, size_t n, body_sink& s);
  bool finish(body_sink& s);
  // After an error: hands over the field being read, if any (a value cut at the error must still be
  // scanned when the policy goes on raw).
  void flush_partial(body_sink& s);
  body_error error() const { return err_; }
  uint32_t flags() const { return flags_; }
  bool strict_error() const {
    return (flags_ & strict_error_mask) != 0 || err_ != body_error::none;
  }
  uint32_t args() const { return args_; }
  uint32_t files() const { return files_; }
  uint64_t files_combined_size() const { return files_size_; }
  static constexpr size_t max_boundary = 70;  // RFC 2046
  static constexpr size_t max_part_header_bytes = 4096;
  static constexpr size_t max_part_headers = 32;
  static constexpr size_t max_filename = 256;

 private:
  enum class st : uint8_t { data, after_delim, headers, epilogue, failed };
  bool fail(body_error e);
  void set(multipart_flag f) { flags_ |= flag_bit(f); }
  void data(const char* p, size_t n);
  bool end_part(body_sink& s);
  bool header_line_done(body_sink& s);
  bool headers_done(body_sink& s);
  bool parse_disposition(std::string_view v);

  field_buffer* buf_ = nullptr;
  body_limits lim_;
  std::array<char, 4 + max_boundary> delim_{};  // "\r\n--" boundary
  uint8_t delim_len_ = 0;
  uint8_t dm_ = 0;      // bytes of delim_ matched
  bool dm_lf_ = false;  // the match began with a bare LF
  uint8_t ad_ = 0;      // after_delim sub-state
  uint8_t ep_ = 0;      // epilogue: 0 start, 1 after CR, 2 after the line end
  st st_ = st::data;
  bool in_part_ = false;  // false: preamble
  bool is_file_ = false, seen_disposition_ = false;
  uint64_t file_size_ = 0, files_size_ = 0;
  uint32_t args_ = 0, files_ = 0;
  uint32_t flags_ = 0;
  body_error err_ = body_error::none;
  // Part headers: complete lines, back to back; hdr_off_ marks where each starts.
  std::array<char, max_part_header_bytes> hdrs_{};
  std::array<uint16_t, max_part_headers + 1> hdr_off_{};
  uint16_t hdr_len_ = 0, n_hdrs_ = 0, line_start_ = 0;
  bool line_cr_ = false;
  std::array<char, max_filename> filename_{};
  uint16_t filename_len_ = 0;
};

// application/json: every scalar becomes an argument named by its path as libmodsecurity3 (3.0.x)
// names it: the root is "json", object members add ".key" and array elements ".array_N", e.g.
// {"a":{"b":[1,{"c":2}]}} gives json.a.b.array_0 = 1 and json.a.b.array_1.c = 2; an empty key is
// "empty-key"; null is the empty value.
class json_parser {
 public:
  void start(field_buffer* buf, const body_limits& lim);
  bool feed(const char* p, size_t n, body_sink& s);
  bool finish(body_sink& s);
  void flush_partial(body_sink& s);  // as multipart_parser::flush_partial
  body_error error() const { return err_; }
  uint32_t args() const { return args_; }
  uint32_t depth() const { return depth_; }

 private:
  enum class st : uint8_t {
    value,         // a value is expected (after ':' or '[' or ',' in an array, or at the root)
    value_or_end,  // after '[': a value or ']'
    key_or_end,    // after '{': a key or '}'
    key,           // after ',' in an object: a key
    colon,
    after_value,  // ',' or the closer
    string,
    escape,
    unicode,
    number,
    literal,
    done,
    failed
  };
  struct level {
    uint32_t mid = 0;    // path length through this container's name
    uint32_t count = 0;  // arrays: index of the current element
    bool array = false;
  };
  bool fail(body_error e);
  bool value_start(char c, body_sink& s);
  bool scalar_done(body_sink& s);
  bool open(bool array);
  bool close(bool array);
  void element_done();
  void path_set_len(uint32_t n);
  void path_append(std::string_view t);
  void array_suffix(level& l);
  void out_byte(char c);

  field_buffer* buf_ = nullptr;
  body_limits lim_;
  std::array<level, body_limits::json_max_depth + 1> stack_{};
  uint32_t depth_ = 0;
  uint32_t path_len_ = 0;  // committed path in buf_->name (the key being read follows it)
  uint32_t args_ = 0;
  uint32_t containers_ = 0;  // objects and arrays opened (bounded by max_args too)
  st st_ = st::value, after_string_ = st::value;
  bool reading_key_ = false;
  bool path_truncated_ = false;
  uint8_t hex_n_ = 0;
  uint32_t cp_ = 0, high_ = 0;  // \u escape being read; a pending high surrogate
  const char* lit_ = nullptr;   // literal being matched ("true", "false", "null")
  uint8_t lit_i_ = 0;
  body_error err_ = body_error::none;
};

}  // namespace waf
