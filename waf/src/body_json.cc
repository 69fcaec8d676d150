// application/json as a byte-at-a-time state machine (RFC 8259, no extensions). The argument name
// is the path, kept in the field buffer's name area: each open container records where its own
// name ends (level::mid), so an array's ".array_N" suffix is rewritten in place as N grows and a
// key being read is appended after the committed path without copying.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "waf/body.hh"

namespace waf {
namespace {

bool is_json_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool json_parser::fail(body_error e) {
  if (err_ == body_error::none) err_ = e;
  st_ = st::failed;
  return false;
}

void json_parser::start(field_buffer* buf, const body_limits& lim) {
  buf_ = buf;
  buf_->clear();
  lim_ = lim;
  lim_.max_json_depth = std::min(lim.max_json_depth, body_limits::json_max_depth);
  depth_ = path_len_ = args_ = containers_ = 0;
  st_ = st::value;
  after_string_ = st::value;
  reading_key_ = path_truncated_ = false;
  hex_n_ = 0;
  cp_ = high_ = 0;
  lit_ = nullptr;
  lit_i_ = 0;
  err_ = body_error::none;
}

void json_parser::path_set_len(uint32_t n) {
  path_len_ = std::min(n, buf_->name_cap);
  buf_->name_len = path_len_;
}

void json_parser::path_append(std::string_view t) {
  buf_->name_len = path_len_;
  for (char c : t) buf_->name_byte(c);
  if (buf_->truncated) path_truncated_ = true;
  path_len_ = buf_->name_len;
}

void json_parser::array_suffix(level& l) {
  path_set_len(l.mid);
  char num[24];
  int k = std::snprintf(num, sizeof num, ".array_%u", l.count);
  path_append(std::string_view(num, k > 0 ? static_cast<size_t>(k) : 0));
}

// Bytes of a string: into the path (a key) or the value.
void json_parser::out_byte(char c) {
  if (reading_key_) {
    buf_->name_byte(c);
    if (buf_->truncated) path_truncated_ = true;
  } else {
    buf_->value_byte(c);
  }
}

// A container opens: its name is the pending key (in a map; "empty-key" if empty), "json" at the
// root, nothing in an array.
bool json_parser::open(bool array) {
  if (depth_ >= lim_.max_json_depth) return fail(body_error::json_depth);
  // Containers count against max_args as scalars do (apart): each costs path work but yields no
  // argument, so without a bound `[[],[],...]` buys the parser's time at three bytes apiece.
  if (++containers_ > lim_.max_args) return fail(body_error::too_many_args);
  if (depth_ == 0) {
    path_set_len(0);
    path_append("json");
  } else if (!stack_[depth_].array) {
    if (buf_->name_len == path_len_)
      path_append("empty-key");
    else
      path_len_ = buf_->name_len;  // commit the key
  }
  level& l = stack_[++depth_];
  l = level{};
  l.array = array;
  l.mid = path_len_;
  if (array)
    array_suffix(l);
  else
    path_append(".");
  return true;
}

void json_parser::element_done() {
  if (depth_ == 0) {
    st_ = st::done;
    return;
  }
  level& l = stack_[depth_];
  if (l.array) {
    ++l.count;
    array_suffix(l);
  } else {
    path_set_len(l.mid + 1);  // drop the key: back to "<path>."
  }
  st_ = st::after_value;
}

bool json_parser::close(bool array) {
  if (depth_ == 0 || stack_[depth_].array != array) return fail(body_error::json_syntax);
  --depth_;
  if (depth_ > 0) {
    const level& parent = stack_[depth_ + 1];
    path_set_len(parent.mid);  // back to the parent's path (its key/element suffix follows)
    level& up = stack_[depth_];
    if (!up.array) path_set_len(up.mid + 1);
  }
  element_done();
  return true;
}

// The value of a scalar is complete (in buf_->value): emit it under the current path.
bool json_parser::scalar_done(body_sink& s) {
  if (++args_ > lim_.max_args) return fail(body_error::too_many_args);
  std::string_view name;
  if (depth_ == 0) {
    path_set_len(0);
    path_append("json");
    name = buf_->name_view();
  } else if (stack_[depth_].array) {
    name = std::string_view(buf_->name, path_len_);
  } else {
    if (buf_->name_len == path_len_) path_append("empty-key");
    name = buf_->name_view();
  }
  s.arg(name, buf_->value_view(), buf_->truncated || path_truncated_);
  buf_->value_len = 0;
  buf_->truncated = path_truncated_;
  element_done();
  return true;
}

bool json_parser::value_start(char c, body_sink& s) {
  (void)s;
  buf_->value_len = 0;
  switch (c) {
    case '{':
      if (!open(false)) return false;
      st_ = st::key_or_end;
      return true;
    case '[':
      if (!open(true)) return false;
      st_ = st::value_or_end;
      return true;
    case '"':
      reading_key_ = false;
      after_string_ = st::after_value;
      st_ = st::string;
      return true;
    case 't':
      lit_ = "true";
      break;
    case 'f':
      lit_ = "false";
      break;
    case 'n':
      lit_ = "null";
      break;
    default:
      if (c == '-' || (c >= '0' && c <= '9')) {
        buf_->value_byte(c);
        st_ = st::number;
        return true;
      }
      return fail(body_error::json_syntax);
  }
  lit_i_ = 1;
  st_ = st::literal;
  return true;
}

bool json_parser::feed(const char* p, size_t n, body_sink& s) {
  for (size_t i = 0; i < n; ++i) {
    const char c = p[i];
    switch (st_) {
      case st::value:
      case st::value_or_end:
        if (is_json_ws(c)) break;
        if (c == ']' && st_ == st::value_or_end) {
          if (!close(true)) return false;
          break;
        }
        if (!value_start(c, s)) return false;
        break;
      case st::key_or_end:
      case st::key:
        if (is_json_ws(c)) break;
        if (c == '}' && st_ == st::key_or_end) {
          if (!close(false)) return false;
          break;
        }
        if (c != '"') return fail(body_error::json_syntax);
        buf_->name_len = path_len_;
        reading_key_ = true;
        after_string_ = st::colon;
        st_ = st::string;
        break;
      case st::colon:
        if (is_json_ws(c)) break;
        if (c != ':') return fail(body_error::json_syntax);
        st_ = st::value;
        break;
      case st::after_value:
        if (is_json_ws(c)) break;
        if (c == ',') {
          st_ = stack_[depth_].array ? st::value : st::key;
        } else if (c == ']' || c == '}') {
          if (!close(c == ']')) return false;
        } else {
          return fail(body_error::json_syntax);
        }
        break;
      case st::string:
        if (c == '"') {
          if (high_ != 0) {  // a lone high surrogate: kept as its 3-byte form (as WTF-8)
            out_byte(static_cast<char>(0xe0 | (high_ >> 12)));
            out_byte(static_cast<char>(0x80 | ((high_ >> 6) & 0x3f)));
            out_byte(static_cast<char>(0x80 | (high_ & 0x3f)));
            high_ = 0;
          }
          st_ = after_string_;
          if (!reading_key_ && !scalar_done(s)) return false;
          reading_key_ = false;
          break;
        }
        if (c == '\\') {
          st_ = st::escape;
          break;
        }
        if (static_cast<unsigned char>(c) < 0x20) return fail(body_error::json_syntax);
        out_byte(c);
        break;
      case st::escape: {
        char o = 0;
        switch (c) {
          case '"':
            o = '"';
            break;
          case '\\':
            o = '\\';
            break;
          case '/':
            o = '/';
            break;
          case 'b':
            o = '\b';
            break;
          case 'f':
            o = '\f';
            break;
          case 'n':
            o = '\n';
            break;
          case 'r':
            o = '\r';
            break;
          case 't':
            o = '\t';
            break;
          case 'u':
            st_ = st::unicode;
            hex_n_ = 0;
            cp_ = 0;
            break;
          default:
            return fail(body_error::json_syntax);
        }
        if (st_ == st::unicode) break;
        out_byte(o);
        st_ = st::string;
        break;
      }
      case st::unicode: {
        int h = hexval(c);
        if (h < 0) return fail(body_error::json_syntax);
        cp_ = (cp_ << 4) | static_cast<uint32_t>(h);
        if (++hex_n_ < 4) break;
        st_ = st::string;
        uint32_t cp = cp_;
        if (cp >= 0xd800 && cp <= 0xdbff) {
          high_ = cp;
          break;
        }
        if (cp >= 0xdc00 && cp <= 0xdfff && high_ != 0) {
          cp = 0x10000 + ((high_ - 0xd800) << 10) + (cp - 0xdc00);
          high_ = 0;
        }
        if (cp < 0x80) {
          out_byte(static_cast<char>(cp));
        } else if (cp < 0x800) {
          out_byte(static_cast<char>(0xc0 | (cp >> 6)));
          out_byte(static_cast<char>(0x80 | (cp & 0x3f)));
        } else if (cp < 0x10000) {
          out_byte(static_cast<char>(0xe0 | (cp >> 12)));
          out_byte(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
          out_byte(static_cast<char>(0x80 | (cp & 0x3f)));
        } else {
          out_byte(static_cast<char>(0xf0 | (cp >> 18)));
          out_byte(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
          out_byte(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
          out_byte(static_cast<char>(0x80 | (cp & 0x3f)));
        }
        break;
      }
      case st::number:
        if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
          buf_->value_byte(c);
          break;
        }
        if (!scalar_done(s)) return false;
        --i;  // the byte after the number is looked at in the new state
        break;
      case st::literal:
        if (c != lit_[lit_i_]) return fail(body_error::json_syntax);
        if (lit_[++lit_i_] == '\0') {
          if (lit_[0] != 'n') buf_->value_bytes(lit_, lit_i_);
          if (!scalar_done(s)) return false;
        }
        break;
      case st::done:
        if (!is_json_ws(c)) return fail(body_error::json_syntax);
        break;
      case st::failed:
        return false;
    }
  }
  return true;
}

bool json_parser::finish(body_sink& s) {
  if (st_ == st::failed) return false;
  if (st_ == st::number && depth_ == 0 && !scalar_done(s)) return false;
  if (st_ != st::done) return fail(body_error::json_truncated);
  return true;
}

void json_parser::flush_partial(body_sink& s) {
  if (reading_key_ || buf_->value_len == 0) return;
  std::string_view name = depth_ == 0            ? std::string_view("json")
                          : stack_[depth_].array ? std::string_view(buf_->name, path_len_)
                                                 : buf_->name_view();
  s.arg(name, buf_->value_view(), buf_->truncated);
  buf_->value_len = 0;
}

}  // namespace waf
