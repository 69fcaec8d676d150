// Transformations with ModSecurity's semantics where CRS depends on them (urlDecodeUni, lowercase,
// normalizePath, removeNulls, htmlEntityDecode, compressWhitespace, base64Decode).
#include "waf/transform.hh"

// SHA1() and EVP_Digest allocate a digest context per call on OpenSSL 3; the low-level
// SHA1_Init/Update/Final keep it on the stack, as the data path needs.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace waf {
namespace {

int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == 0xa0;
}

// %XX, %uXXXX (full-width ASCII U+FF01..U+FF5E folds to ASCII, other code points keep their low
// byte as ModSecurity does), '+' as space. Malformed escapes stay literal.
size_t url_decode(char* b, size_t n) {
  size_t w = 0;
  for (size_t r = 0; r < n;) {
    unsigned char c = static_cast<unsigned char>(b[r]);
    if (c == '%') {
      if (r + 5 < n && (b[r + 1] == 'u' || b[r + 1] == 'U')) {
        int h1 = hexval(b[r + 2]), h2 = hexval(b[r + 3]), h3 = hexval(b[r + 4]),
            h4 = hexval(b[r + 5]);
        if (h1 >= 0 && h2 >= 0 && h3 >= 0 && h4 >= 0) {
          unsigned cp = static_cast<unsigned>((h1 << 12) | (h2 << 8) | (h3 << 4) | h4);
          if (cp >= 0xff01 && cp <= 0xff5e) cp -= 0xfee0;
          b[w++] = static_cast<char>(cp & 0xff);
          r += 6;
          continue;
        }
      }
      if (r + 2 < n) {
        int h1 = hexval(b[r + 1]), h2 = hexval(b[r + 2]);
        if (h1 >= 0 && h2 >= 0) {
          b[w++] = static_cast<char>((h1 << 4) | h2);
          r += 3;
          continue;
        }
      }
      b[w++] = b[r++];
    } else if (c == '+') {
      b[w++] = ' ';
      ++r;
    } else {
      b[w++] = b[r++];
    }
  }
  return w;
}

size_t uri_decode_bytes(char* b, size_t n) {
  size_t w = 0;
  for (size_t r = 0; r < n;) {
    if (b[r] == '%' && r + 2 < n) {
      int h1 = hexval(b[r + 1]), h2 = hexval(b[r + 2]);
      if (h1 >= 0 && h2 >= 0) {
        b[w++] = static_cast<char>((h1 << 4) | h2);
        r += 3;
        continue;
      }
    }
    b[w++] = b[r++];
  }
  return w;
}

size_t lowercase(char* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(b[i]);
    if (c >= 'A' && c <= 'Z') b[i] = static_cast<char>(c + 32);
  }
  return n;
}

size_t remove_nulls(char* b, size_t n) {
  size_t w = 0;
  for (size_t r = 0; r < n; ++r)
    if (b[r] != '\0') b[w++] = b[r];
  return w;
}

size_t remove_whitespace(char* b, size_t n) {
  size_t w = 0;
  for (size_t r = 0; r < n; ++r)
    if (!is_space(static_cast<unsigned char>(b[r]))) b[w++] = b[r];
  return w;
}

size_t compress_whitespace(char* b, size_t n, bool& last_space) {
  size_t w = 0;
  for (size_t r = 0; r < n; ++r) {
    if (is_space(static_cast<unsigned char>(b[r]))) {
      if (!last_space) b[w++] = ' ';
      last_space = true;
    } else {
      b[w++] = b[r];
      last_space = false;
    }
  }
  return w;
}

// Resolves "." and ".." segments and collapses repeated slashes; ".." never climbs above the
// start, so "/../../etc/passwd" becomes "/etc/passwd" (what a server would open).
size_t normalize_path(char* b, size_t n, bool win) {
  if (win)
    for (size_t i = 0; i < n; ++i)
      if (b[i] == '\\') b[i] = '/';
  size_t w = 0;
  size_t r = 0;
  bool absolute = n > 0 && b[0] == '/';
  if (absolute) {
    b[w++] = '/';
    r = 1;
  }
  // As ModSecurity's normalizePath: ".." above the root is dropped in an absolute path and kept
  // in a relative one ("../../boot.ini" stays, so "/boot.ini" still matches in it); a trailing
  // slash stays only if the input had one.
  size_t root = w;
  const bool trailing = n > 0 && b[n - 1] == '/';
  while (r < n) {
    size_t s = r;
    while (r < n && b[r] != '/') ++r;
    size_t len = r - s;
    bool trailing_slash = r < n;
    if (r < n) ++r;  // skip '/'
    if (len == 0) continue;
    if (len == 1 && b[s] == '.') {
      continue;
    }
    if (len == 2 && b[s] == '.' && b[s + 1] == '.') {
      if (!absolute && w == root) {  // nothing left to drop: a kept "../" is the new root
        b[w++] = '.';
        b[w++] = '.';
        if (trailing_slash) b[w++] = '/';
        root = w;
        continue;
      }
      // drop the previous segment
      if (w > root) {
        size_t k = w;
        if (k > root && b[k - 1] == '/') --k;
        while (k > root && b[k - 1] != '/') --k;
        w = k;
      }
      continue;
    }
    std::memmove(b + w, b + s, len);
    w += len;
    if (trailing_slash) b[w++] = '/';
  }
  if (!trailing && w > 1 && b[w - 1] == '/') --w;
  return w;
}

size_t html_entity_decode(char* b, size_t n) {
  size_t w = 0;
  size_t r = 0;
  while (r < n) {
    if (b[r] != '&') {
      b[w++] = b[r++];
      continue;
    }
    size_t k = r + 1;
    if (k < n && b[k] == '#') {
      ++k;
      bool hex = k < n && (b[k] == 'x' || b[k] == 'X');
      if (hex) ++k;
      size_t ds = k;
      unsigned long v = 0;
      while (k < n && k - ds < 8) {
        int h = hex ? hexval(b[k]) : (b[k] >= '0' && b[k] <= '9' ? b[k] - '0' : -1);
        if (h < 0) break;
        v = v * (hex ? 16 : 10) + static_cast<unsigned>(h);
        ++k;
      }
      if (k > ds) {
        if (k < n && b[k] == ';') ++k;
        b[w++] = static_cast<char>(v & 0xff);
        r = k;
        continue;
      }
      b[w++] = b[r++];
      continue;
    }
    struct named {
      const char* name;
      char c;
    };
    static constexpr named names[] = {{"quot", '"'}, {"amp", '&'},  {"lt", '<'},
                                      {"gt", '>'},   {"nbsp", ' '}, {"apos", '\''}};
    bool done = false;
    for (const auto& e : names) {
      size_t l = std::strlen(e.name);
      if (k + l <= n && std::strncmp(b + k, e.name, l) == 0) {
        size_t end = k + l;
        if (end < n && b[end] == ';') ++end;
        b[w++] = e.c;
        r = end;
        done = true;
        break;
      }
    }
    if (!done) b[w++] = b[r++];
  }
  return w;
}

int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// Decodes up to the first '=' or non-alphabet byte (whitespace skipped); a trailing partial
// quantum contributes its complete bytes.
size_t base64_decode(char* b, size_t n) {
  size_t w = 0;
  unsigned acc = 0;
  int bits = 0;
  for (size_t r = 0; r < n; ++r) {
    unsigned char c = static_cast<unsigned char>(b[r]);
    if (is_space(c)) continue;
    int v = b64val(c);
    if (v < 0) break;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      b[w++] = static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return w;
}

// \uHHHH (low byte, full-width ASCII folded), \xHH, \OOO, \b \f \n \r \t \v, \c -> c.
size_t js_decode(char* b, size_t n) {
  size_t w = 0, r = 0;
  while (r < n) {
    if (b[r] != '\\' || r + 1 >= n) {
      b[w++] = b[r++];
      continue;
    }
    char c = b[r + 1];
    if ((c == 'u' || c == 'U') && r + 5 < n && hexval(b[r + 2]) >= 0 && hexval(b[r + 3]) >= 0 &&
        hexval(b[r + 4]) >= 0 && hexval(b[r + 5]) >= 0) {
      unsigned cp = static_cast<unsigned>((hexval(b[r + 2]) << 12) | (hexval(b[r + 3]) << 8) |
                                          (hexval(b[r + 4]) << 4) | hexval(b[r + 5]));
      if (cp >= 0xff01 && cp <= 0xff5e) cp -= 0xfee0;
      b[w++] = static_cast<char>(cp & 0xff);
      r += 6;
    } else if ((c == 'x' || c == 'X') && r + 3 < n && hexval(b[r + 2]) >= 0 &&
               hexval(b[r + 3]) >= 0) {
      b[w++] = static_cast<char>((hexval(b[r + 2]) << 4) | hexval(b[r + 3]));
      r += 4;
    } else if (c >= '0' && c <= '7') {
      unsigned v = 0;
      size_t k = r + 1;
      while (k < n && k < r + 4 && b[k] >= '0' && b[k] <= '7')
        v = v * 8 + static_cast<unsigned>(b[k++] - '0');
      b[w++] = static_cast<char>(v & 0xff);
      r = k;
    } else {
      // The C escapes; any other escaped character stands for itself.
      static constexpr std::string_view from = "abfnrtv", to = "\a\b\f\n\r\t\v";
      const size_t i = from.find(c);
      b[w++] = i == std::string_view::npos ? c : to[i];
      r += 2;
    }
  }
  return w;
}

// CSS escapes: backslash + 1..6 hex digits (low byte kept, one following whitespace eaten),
// backslash-newline removed, backslash + other char -> that char.
size_t css_decode(char* b, size_t n) {
  size_t w = 0, r = 0;
  while (r < n) {
    if (b[r] != '\\') {
      b[w++] = b[r++];
      continue;
    }
    if (r + 1 >= n) {
      ++r;  // a lone trailing backslash is dropped
      continue;
    }
    size_t k = r + 1;
    unsigned v = 0;
    while (k < n && k < r + 7 && hexval(b[k]) >= 0)
      v = (v << 4) | static_cast<unsigned>(hexval(b[k++]));
    if (k > r + 1) {
      if (v >= 0xff01 && v <= 0xff5e) v -= 0xfee0;
      b[w++] = static_cast<char>(v & 0xff);
      if (k < n && is_space(static_cast<unsigned char>(b[k]))) ++k;
      r = k;
    } else if (b[r + 1] == '\n') {
      r += 2;
    } else {
      b[w++] = b[r + 1];
      r += 2;
    }
  }
  return w;
}

// ModSecurity's cmdLine: drop \ " ' ^, drop spaces before / and (, ',' and ';' become spaces,
// whitespace runs become one space, lowercase.
size_t cmd_line(char* b, size_t n) {
  size_t w = 0;
  bool space = false;
  for (size_t r = 0; r < n; ++r) {
    unsigned char c = static_cast<unsigned char>(b[r]);
    if (c == '\\' || c == '"' || c == '\'' || c == '^') continue;
    if (c == ',' || c == ';' || is_space(c)) {
      if (!space) {
        b[w++] = ' ';
        space = true;
      }
      continue;
    }
    if ((c == '/' || c == '(') && space && w > 0) --w;  // remove the space before
    space = false;
    b[w++] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  return w;
}

// C comments become one space; an unterminated comment runs to the end.
size_t replace_comments(char* b, size_t n) {
  size_t w = 0, r = 0;
  while (r < n) {
    if (r + 1 < n && b[r] == '/' && b[r + 1] == '*') {
      size_t k = r + 2;
      while (k + 1 < n && !(b[k] == '*' && b[k + 1] == '/')) ++k;
      r = k + 1 < n ? k + 2 : n;
      b[w++] = ' ';
      continue;
    }
    b[w++] = b[r++];
  }
  return w;
}

size_t trim(char* b, size_t n) {
  size_t s = 0;
  while (s < n && is_space(static_cast<unsigned char>(b[s]))) ++s;
  while (n > s && is_space(static_cast<unsigned char>(b[n - 1]))) --n;
  std::memmove(b, b + s, n - s);
  return n - s;
}

// Multi-byte UTF-8 sequences become %uHHHH (ModSecurity's utf8toUnicode); output stops at cap.
size_t utf8_to_unicode(char* b, size_t n, size_t cap, char* tmp) {
  bool ascii = true;
  for (size_t i = 0; i < n && ascii; ++i) ascii = static_cast<unsigned char>(b[i]) < 0x80;
  if (ascii) return n;
  std::memcpy(tmp, b, n);
  static const char* hex = "0123456789abcdef";
  size_t w = 0, r = 0;
  while (r < n && w < cap) {
    unsigned char c = static_cast<unsigned char>(tmp[r]);
    unsigned cp = 0;
    size_t len = 0;
    if (c < 0x80) {
      b[w++] = static_cast<char>(c);
      ++r;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      cp = c & 0x1f;
      len = 2;
    } else if ((c & 0xf0) == 0xe0) {
      cp = c & 0x0f;
      len = 3;
    } else if ((c & 0xf8) == 0xf0) {
      cp = c & 0x07;
      len = 4;
    }
    bool ok = len > 0 && r + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      unsigned char d = static_cast<unsigned char>(tmp[r + k]);
      ok = (d & 0xc0) == 0x80;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (!ok) {
      b[w++] = static_cast<char>(c);
      ++r;
      continue;
    }
    if (w + 6 > cap) break;
    b[w++] = '%';
    b[w++] = 'u';
    for (int sh = 12; sh >= 0; sh -= 4) b[w++] = hex[(cp >> sh) & 15];
    r += len;
  }
  return w;
}

// Bytes at the end of b[0,n) that may be the start of an escape completed by the next segment.
size_t url_decode_holdback(const char* b, size_t n) {
  for (size_t back = 1; back <= max_stream_carry && back <= n; ++back) {
    if (b[n - back] != '%') continue;
    const char* p = b + n - back;
    size_t have = back;
    if (have == 1) return back;
    if (p[1] == 'u' || p[1] == 'U') {
      if (have < 6) {
        for (size_t i = 2; i < have; ++i)
          if (hexval(p[i]) < 0) return 0;
        return back;
      }
      return 0;
    }
    if (have < 3) return hexval(p[1]) >= 0 ? back : 0;
    return 0;
  }
  return 0;
}

}  // namespace

size_t uri_decode(char* buf, size_t len) {
  return uri_decode_bytes(buf, len);
}

size_t apply_transform(transform t, char* buf, size_t len, size_t cap, char* tmp) {
  bool ls = false;
  switch (t) {
    case transform::url_decode:
      return url_decode(buf, len);
    case transform::lowercase:
      return lowercase(buf, len);
    case transform::normalize_path:
      return normalize_path(buf, len, false);
    case transform::normalize_path_win:
      return normalize_path(buf, len, true);
    case transform::remove_nulls:
      return remove_nulls(buf, len);
    case transform::html_entity_decode:
      return html_entity_decode(buf, len);
    case transform::compress_whitespace:
      return compress_whitespace(buf, len, ls);
    case transform::remove_whitespace:
      return remove_whitespace(buf, len);
    case transform::base64_decode:
      return base64_decode(buf, len);
    case transform::utf8_to_unicode:
      return utf8_to_unicode(buf, len, cap, tmp);
    case transform::js_decode:
      return js_decode(buf, len);
    case transform::css_decode:
      return css_decode(buf, len);
    case transform::cmd_line:
      return cmd_line(buf, len);
    case transform::replace_comments:
      return replace_comments(buf, len);
    case transform::trim:
      return trim(buf, len);
    case transform::length: {  // its length in bytes, in decimal (CRS: with @gt and a limit)
      char num[24];
      int k = std::snprintf(num, sizeof num, "%zu", len);
      size_t n = std::min(k > 0 ? static_cast<size_t>(k) : 0, cap);
      std::memcpy(buf, num, n);
      return n;
    }
    case transform::hex_encode: {  // ModSecurity's hexEncode: two lowercase digits a byte
      static constexpr char digits[] = "0123456789abcdef";
      const size_t n = std::min(len, cap / 2);  // the bytes past cap/2 are cut, as utf8_to_unicode
      for (size_t i = n; i-- > 0;) {  // from the end: in place, each byte read before overwritten
        const auto c = static_cast<unsigned char>(buf[i]);
        buf[2 * i] = digits[c >> 4];
        buf[2 * i + 1] = digits[c & 15];
      }
      return 2 * n;
    }
    case transform::sha1: {  // the 20-byte binary digest (CRS follows it with hexEncode)
      unsigned char md[SHA_DIGEST_LENGTH];
      SHA_CTX c;
      SHA1_Init(&c);
      SHA1_Update(&c, buf, len);
      SHA1_Final(md, &c);
      const size_t n = std::min(sizeof md, cap);
      std::memcpy(buf, md, n);
      return n;
    }
  }
  return len;
}

size_t apply_transforms(std::span<const transform> ts, char* buf, size_t len, size_t cap,
                        char* tmp) {
  for (transform t : ts) len = apply_transform(t, buf, len, cap, tmp);
  return len;
}

bool is_streamable(transform t) {
  switch (t) {
    case transform::url_decode:
    case transform::lowercase:
    case transform::remove_nulls:
    case transform::compress_whitespace:
    case transform::remove_whitespace:
      return true;
    default:
      return false;
  }
}

size_t stream_transform(std::span<const transform> ts, stream_transform_state& st, const char* in,
                        size_t n, char* out, bool final) {
  if (n != 0) std::memcpy(out, in, n);  // `in` may be null for an empty chunk
  size_t len = n;
  for (size_t i = 0; i < ts.size() && i < max_stream_transforms; ++i) {
    switch (ts[i]) {
      case transform::url_decode: {
        // Prepend what the previous segment held back, then hold back a new incomplete escape.
        size_t c = st.carry_len[i];
        if (c) {
          std::memmove(out + c, out, len);
          std::memcpy(out, st.carry[i].data(), c);
          len += c;
        }
        size_t h = final ? 0 : url_decode_holdback(out, len);
        std::memcpy(st.carry[i].data(), out + len - h, h);
        st.carry_len[i] = static_cast<uint8_t>(h);
        len = url_decode(out, len - h);
        break;
      }
      case transform::compress_whitespace:
        len = compress_whitespace(out, len, st.last_space);
        break;
      default:
        len = apply_transform(ts[i], out, len, len, nullptr);
        break;  // streamable: in place
    }
  }
  return len;
}

}  // namespace waf
