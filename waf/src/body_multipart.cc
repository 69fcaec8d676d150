// multipart/form-data as a byte-at-a-time state machine. The body is scanned for the delimiter
// CRLF "--" boundary (or a bare LF, flagged lf_line) with the few bytes of a partial match held
// back; part headers are collected whole (bounded), part data goes to the field buffer (fields)
// or is only counted (files: their content is never an argument).
#include <algorithm>
#include <cstring>

#include "waf/body.hh"
#include "waf/http.hh"

namespace waf {
namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t';
}

// RFC 2046 bchars: DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," / "-" / "." / "/" / ":" /
// "=" / "?" and space (not last).
bool is_bchar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::strchr("'()+_,-./:=? ", c) != nullptr;
}

std::string_view trim(std::string_view v) {
  while (!v.empty() && is_ws(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_ws(v.back())) v.remove_suffix(1);
  return v;
}

}  // namespace

bool multipart_parser::fail(body_error e) {
  if (err_ == body_error::none) err_ = e;
  st_ = st::failed;
  return false;
}

bool multipart_parser::start(std::string_view ct, field_buffer* buf, const body_limits& lim) {
  *this = multipart_parser{};
  buf_ = buf;
  buf_->clear();
  lim_ = lim;
  // The boundary parameter: exactly one, optionally quoted (flagged), no space around '='
  // (flagged), 1..70 bchars not ending in a space.
  std::string_view v;
  bool found = false;
  for (std::string_view rest = ct.substr(std::min(ct.size(), ct.find(';')));;) {
    if (rest.empty()) break;
    rest.remove_prefix(1);  // the ';'
    size_t semi = rest.find(';');
    std::string_view param = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi);
    size_t eq = param.find('=');
    std::string_view pname = param.substr(0, eq);
    if (!iequals(trim(pname), "boundary")) continue;
    if (found) return fail(body_error::multipart_bad_boundary);  // two boundary parameters
    found = true;
    if (eq == std::string_view::npos) return fail(body_error::multipart_no_boundary);
    if (!pname.empty() && is_ws(pname.back())) set(multipart_flag::boundary_whitespace);
    v = param.substr(eq + 1);
    if (!v.empty() && is_ws(v.front())) set(multipart_flag::boundary_whitespace);
    v = trim(v);
  }
  if (!found) return fail(body_error::multipart_no_boundary);
  if (!v.empty() && v.front() == '"') {
    set(multipart_flag::boundary_quoted);
    if (v.size() < 2 || v.back() != '"') return fail(body_error::multipart_bad_boundary);
    v = v.substr(1, v.size() - 2);
  } else if (v.find('"') != std::string_view::npos) {
    return fail(body_error::multipart_bad_boundary);
  }
  if (v.empty() || v.size() > max_boundary || v.back() == ' ')
    return fail(body_error::multipart_bad_boundary);
  for (char c : v)
    if (!is_bchar(c)) return fail(body_error::multipart_bad_boundary);
  std::memcpy(delim_.data(), "\r\n--", 4);
  std::memcpy(delim_.data() + 4, v.data(), v.size());
  delim_len_ = static_cast<uint8_t>(4 + v.size());
  // The body starts as if a line had just ended: "--boundary" right away is the first delimiter.
  dm_ = 2;
  return true;
}

void multipart_parser::data(const char* p, size_t n) {
  if (n == 0) return;
  if (!in_part_) {
    set(multipart_flag::data_before);
    return;
  }
  if (is_file_) {
    file_size_ += n;
    files_size_ += n;
  } else {
    buf_->value_bytes(p, n);
  }
}

bool multipart_parser::end_part(body_sink& s) {
  if (!in_part_) return true;
  if (is_file_) {
    s.file(buf_->name_view(), {filename_.data(), filename_len_}, file_size_);
  } else {
    if (++args_ > lim_.max_args) return fail(body_error::too_many_args);
    s.arg(buf_->name_view(), buf_->value_view(), buf_->truncated);
  }
  in_part_ = false;
  return true;
}

// Content-Disposition: form-data; name="x"[; filename="y"]. ModSecurity's checks: the semicolon
// between parameters, quoting (single quotes or a missing closing quote), no duplicate or unknown
// parameter, a name present.
bool multipart_parser::parse_disposition(std::string_view v) {
  v = trim(v);
  if (v.size() < 9 || !iequals(v.substr(0, 9), "form-data")) return false;
  v.remove_prefix(9);
  bool have_name = false, have_file = false;
  while (true) {
    v = trim(v);
    if (v.empty()) break;
    if (v.front() != ';') {
      set(multipart_flag::missing_semicolon);
    } else {
      v.remove_prefix(1);
      v = trim(v);
      if (v.empty()) break;
    }
    size_t eq = v.find('=');
    if (eq == std::string_view::npos) return false;
    std::string_view pname = trim(v.substr(0, eq));
    v = trim(v.substr(eq + 1));
    char out[max_filename];
    size_t out_len = 0;
    bool out_trunc = false;
    auto put = [&](char c) {
      out_len < sizeof out ? void(out[out_len++] = c) : void(out_trunc = true);
    };
    if (!v.empty() && (v.front() == '"' || v.front() == '\'')) {
      const char q = v.front();
      if (q == '\'') set(multipart_flag::invalid_quoting);
      size_t i = 1;
      bool closed = false;
      for (; i < v.size(); ++i) {
        if (v[i] == '\\' && q == '"' && i + 1 < v.size() && (v[i + 1] == '"' || v[i + 1] == '\\')) {
          put(v[++i]);
        } else if (v[i] == q) {
          closed = true;
          break;
        } else {
          put(v[i]);
        }
      }
      if (!closed) {
        set(multipart_flag::invalid_quoting);
        return false;
      }
      v.remove_prefix(i + 1);
    } else {
      size_t i = 0;
      for (; i < v.size() && v[i] != ';' && !is_ws(v[i]); ++i) {
        if (v[i] == '"' || v[i] == '\'') set(multipart_flag::invalid_quoting);
        put(v[i]);
      }
      v.remove_prefix(i);
    }
    if (iequals(pname, "name")) {
      if (have_name) return false;
      have_name = true;
      buf_->name_len = 0;
      for (size_t k = 0; k < out_len; ++k) buf_->name_byte(out[k]);
      if (out_trunc) buf_->truncated = true;
    } else if (iequals(pname, "filename") || iequals(pname, "filename*")) {
      if (have_file) return false;
      have_file = true;
      std::memcpy(filename_.data(), out, out_len);
      filename_len_ = static_cast<uint16_t>(out_len);
    } else {
      return false;
    }
  }
  if (!have_name) return false;
  is_file_ = have_file;
  return true;
}

bool multipart_parser::headers_done(body_sink& s) {
  std::string_view disp;
  int found = 0;
  for (uint16_t i = 0; i < n_hdrs_; ++i) {
    std::string_view l(hdrs_.data() + hdr_off_[i], hdr_off_[i + 1] - hdr_off_[i]);
    size_t colon = l.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      set(multipart_flag::invalid_part);
      return fail(body_error::multipart_header_line);
    }
    if (iequals(trim(l.substr(0, colon)), "content-disposition")) {
      disp = l.substr(colon + 1);
      ++found;
    }
  }
  if (found == 0) {
    set(multipart_flag::invalid_part);
    return fail(body_error::multipart_no_disposition);
  }
  buf_->clear();
  filename_len_ = 0;
  is_file_ = false;
  if (found > 1 || !parse_disposition(disp)) {
    set(multipart_flag::invalid_part);
    return fail(body_error::multipart_bad_disposition);
  }
  for (uint16_t i = 0; i < n_hdrs_; ++i)
    s.part_header(buf_->name_view(),
                  std::string_view(hdrs_.data() + hdr_off_[i], hdr_off_[i + 1] - hdr_off_[i]));
  if (is_file_) {
    file_size_ = 0;
    if (++files_ > lim_.max_files) {
      // ModSecurity only flags it and parses on; every further part would still cost its FILES
      // and part-header scans, so a body of tiny file parts could buy ~10x the CPU per byte.
      set(multipart_flag::file_limit_exceeded);
      return fail(body_error::multipart_too_many_files);
    }
  }
  in_part_ = true;
  n_hdrs_ = hdr_len_ = line_start_ = 0;
  st_ = st::data;
  dm_ = 0;
  return true;
}

// A part header line is complete in hdrs_[line_start_, hdr_len_). A line that starts with a space
// or tab continues the previous one (folding, flagged; invalid without a previous line).
bool multipart_parser::header_line_done(body_sink& s) {
  if (!line_cr_) set(multipart_flag::lf_line);
  line_cr_ = false;
  const uint16_t len = static_cast<uint16_t>(hdr_len_ - line_start_);
  if (len == 0) return headers_done(s);
  if (is_ws(hdrs_[line_start_])) {
    set(multipart_flag::header_folding);
    if (n_hdrs_ == 0) {
      set(multipart_flag::invalid_header_folding);
      return fail(body_error::multipart_header_line);
    }
    // Join: drop the leading whitespace but one space; the line stays part of the previous one.
    uint16_t k = line_start_;
    while (k < hdr_len_ && is_ws(hdrs_[k])) ++k;
    hdrs_[line_start_] = ' ';
    std::memmove(hdrs_.data() + line_start_ + 1, hdrs_.data() + k, hdr_len_ - k);
    hdr_len_ = static_cast<uint16_t>(line_start_ + 1 + (hdr_len_ - k));
    hdr_off_[n_hdrs_] = hdr_len_;
    line_start_ = hdr_len_;
    return true;
  }
  if (n_hdrs_ == max_part_headers) return fail(body_error::multipart_headers_too_large);
  ++n_hdrs_;
  hdr_off_[n_hdrs_] = hdr_len_;
  line_start_ = hdr_len_;
  return true;
}

bool multipart_parser::feed(const char* p, size_t n, body_sink& s) {
  if (st_ == st::failed) return false;
  size_t run = 0;  // start of a run of plain data bytes in p, handed over in one piece
  for (size_t i = 0; i < n; ++i) {
    const char c = p[i];
    switch (st_) {
      case st::data: {
        if (dm_ == 0) {
          if (c == '\r' || c == '\n') {
            data(p + run, i - run);
            dm_ = c == '\r' ? 1 : 2;
            dm_lf_ = c == '\n';
            run = i + 1;
          }
          break;
        }
        if (dm_ == 1) {
          if (c == '\n') {
            dm_ = 2;
            run = i + 1;
            break;
          }
          data("\r", 1);
          dm_ = 0;
          run = i;
          --i;  // look at c again
          break;
        }
        if (c == delim_[dm_]) {
          run = i + 1;
          if (++dm_ == delim_len_) {
            if (dm_lf_) set(multipart_flag::lf_line);
            if (!end_part(s)) return false;
            st_ = st::after_delim;
            ad_ = 0;
            dm_ = 0;
          }
          break;
        }
        // Not a delimiter: the held bytes were data (the first CR/LF and what matched after it:
        // no CR/LF among them, so a new match can only start at c).
        if (dm_lf_)
          data("\n", 1);
        else
          data(delim_.data(), 2);
        data(delim_.data() + 2, dm_ - 2u);
        dm_ = 0;
        dm_lf_ = false;
        run = i;
        --i;
        break;
      }
      case st::after_delim:
        // "--" closes the body; else optional linear whitespace, then the line end.
        if (ad_ == 0 && c == '-') {
          ad_ = 1;
        } else if (ad_ == 1) {
          if (c != '-') {
            set(multipart_flag::unmatched_boundary);
            return fail(body_error::multipart_boundary_line);
          }
          st_ = st::epilogue;
          ep_ = 0;
        } else if (is_ws(c) && ad_ != 3) {
          ad_ = 2;
        } else if (c == '\r' && ad_ != 3) {
          ad_ = 3;
        } else if (c == '\n') {
          if (ad_ != 3) set(multipart_flag::lf_line);
          st_ = st::headers;
          n_hdrs_ = hdr_len_ = line_start_ = 0;
          hdr_off_[0] = 0;
          line_cr_ = false;
        } else {
          set(multipart_flag::unmatched_boundary);
          return fail(body_error::multipart_boundary_line);
        }
        run = i + 1;
        break;
      case st::headers:
        run = i + 1;
        if (c == '\n') {
          if (!header_line_done(s)) return false;
          break;
        }
        if (line_cr_) {  // a CR not followed by LF inside a header line
          set(multipart_flag::invalid_part);
          return fail(body_error::multipart_header_line);
        }
        if (c == '\r') {
          line_cr_ = true;
          break;
        }
        if (hdr_len_ == hdrs_.size()) return fail(body_error::multipart_headers_too_large);
        hdrs_[hdr_len_++] = c;
        break;
      case st::epilogue:
        // The line end after the closing delimiter is expected; anything else is data after it.
        if (ep_ == 0 && c == '\r')
          ep_ = 1;
        else if ((ep_ == 0 || ep_ == 1) && c == '\n')
          ep_ = 2;
        else {
          set(multipart_flag::data_after);
          ep_ = 2;
        }
        run = i + 1;
        break;
      case st::failed:
        return false;
    }
  }
  if (st_ == st::data && run < n) data(p + run, n - run);
  return true;
}

bool multipart_parser::finish(body_sink& s) {
  (void)s;
  if (st_ == st::failed) return false;
  if (st_ != st::epilogue) {
    if (!in_part_ && st_ == st::data && files_ == 0 && args_ == 0) set(multipart_flag::data_before);
    return fail(body_error::multipart_final_boundary_missing);
  }
  return true;
}

void multipart_parser::flush_partial(body_sink& s) {
  if (in_part_ && !is_file_) s.arg(buf_->name_view(), buf_->value_view(), buf_->truncated);
  in_part_ = false;
}

}  // namespace waf
