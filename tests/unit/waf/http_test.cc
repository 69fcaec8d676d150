// Request-head parser limits and smuggling defences, and the incremental chunked decoder.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "waf/http.hh"

namespace {

// The head views point into `head`: callers keep it alive while they use *out.
waf::http_error parse(const std::string& head, waf::request_head* out = nullptr,
                      waf::http_limits lim = {}) {
  waf::head_scan_state st;
  size_t end = 0;
  auto e = waf::find_head_end(head.data(), head.size(), lim, st, end);
  if (e != waf::http_error::none) return e;
  if (end == 0) return waf::http_error::truncated;
  static std::vector<waf::http_header> slots;  // out->headers views it after we return
  slots.assign(lim.max_header_count, {});
  waf::request_head h;
  e = waf::parse_request_head(std::string_view(head.data(), end), lim, slots, h);
  if (out) *out = h;
  return e;
}

TEST(http_parser, parses_a_request) {
  std::string req =
      "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example\r\nX-Pad:  v  \r\nContent-Length: 12\r\n\r\n";
  waf::request_head h;
  ASSERT_EQ(parse(req, &h), waf::http_error::none);
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.path, "/a/b");
  EXPECT_EQ(h.query, "x=1&y=2");
  EXPECT_EQ(h.header("x-pad"), "v");
  EXPECT_EQ(h.content_length, 12u);
  EXPECT_FALSE(h.chunked);
}

TEST(http_parser, absolute_form_and_leading_empty_lines) {
  waf::request_head h;
  const std::string req = "\r\nGET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n";  // h views into it
  ASSERT_EQ(parse(req, &h), waf::http_error::none);
  EXPECT_EQ(h.path, "/p");
  EXPECT_EQ(h.query, "q");
}

struct bad {
  const char* name;
  std::string req;
  waf::http_error want;
};

class http_bad : public ::testing::TestWithParam<bad> {};
TEST_P(http_bad, refused_with_reason) {
  EXPECT_EQ(waf::to_string(parse(GetParam().req)), std::string(waf::to_string(GetParam().want)));
}

using E = waf::http_error;
INSTANTIATE_TEST_SUITE_P(
    smuggling_and_malformed, http_bad,
    ::testing::Values(
        bad{"cl_cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            E::duplicate_content_length},
        bad{"cl_te",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            E::content_length_and_transfer_encoding},
        bad{"te_cl",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            E::content_length_and_transfer_encoding},
        bad{"te_te",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
            "chunked\r\n\r\n",
            E::bad_transfer_encoding},
        bad{"te_gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            E::bad_transfer_encoding},
        bad{"te_http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            E::bad_transfer_encoding},
        bad{"cl_sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            E::bad_content_length},
        bad{"cl_list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            E::bad_content_length},
        bad{"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  folded\r\n\r\n", E::obs_fold},
        bad{"bare_lf_header", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", E::bare_lf},
        bad{"bare_lf_end", "GET / HTTP/1.1\nHost: a\n\n", E::bare_lf},
        bad{"space_before_colon",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            E::space_before_colon},
        bad{"bad_name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", E::bad_header_name},
        bad{"ctl_in_value", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n"),
            E::bad_header_value},
        bad{"cr_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", E::bad_header_value},
        bad{"missing_host", "GET / HTTP/1.1\r\nX: 1\r\n\r\n", E::missing_host},
        bad{"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", E::duplicate_host},
        // The WAF would parse the body as text/plain, a last-wins backend as a form.
        bad{"two_content_types",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
            "content-type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\n",
            E::duplicate_content_type},
        bad{"version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", E::bad_version},
        bad{"extra_space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", E::bad_request_line},
        bad{"bad_method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", E::bad_method},
        bad{"bad_target", "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", E::bad_target},
        bad{"star_not_options", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", E::bad_target}));

TEST(http_parser, limits) {
  waf::http_limits lim;
  lim.max_request_line = 64;
  lim.max_header_line = 64;
  lim.max_header_count = 3;
  lim.max_head_bytes = 512;
  EXPECT_EQ(parse("GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", nullptr, lim),
            E::request_line_too_long);
  EXPECT_EQ(
      parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(100, 'b') + "\r\n\r\n", nullptr, lim),
      E::header_line_too_long);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", nullptr, lim),
            E::too_many_headers);
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  while (many.size() < 600) many += "X: 0123456789\r\n";
  EXPECT_EQ(parse(many, nullptr, lim), E::head_too_large);
  // A request line over the limit is refused before its end arrives (no unbounded wait).
  std::string partial = "GET /" + std::string(100, 'a');
  waf::head_scan_state st;
  size_t end = 0;
  EXPECT_EQ(waf::find_head_end(partial.data(), partial.size(), lim, st, end),
            E::request_line_too_long);
}

TEST(http_parser, head_end_found_incrementally) {
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
  waf::http_limits lim;
  waf::head_scan_state st;
  size_t end = 0;
  for (size_t n = 1; n <= req.size(); ++n) {
    ASSERT_EQ(waf::find_head_end(req.data(), n, lim, st, end), E::none);
    if (end) {
      EXPECT_EQ(end, req.size() - 4);
      return;
    }
  }
  FAIL() << "head end not found";
}

std::string decode_all(const std::string& in, size_t step, waf::chunked_decoder::status& last,
                       size_t& used, waf::http_error& err) {
  waf::chunked_decoder d;
  std::string out;
  used = 0;
  last = waf::chunked_decoder::status::need_more;
  err = E::none;
  while (used < in.size()) {
    size_t n = std::min(step, in.size() - used);
    auto r = d.feed(in.data() + used, n, [&](const char* p, size_t k) { out.append(p, k); });
    used += r.consumed;
    last = r.st;
    err = r.err;
    if (r.st != waf::chunked_decoder::status::need_more) break;
  }
  return out;
}

TEST(chunked, decodes_for_every_segment_size) {
  std::string in = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (size_t step = 1; step <= in.size(); ++step) {
    waf::chunked_decoder::status st;
    size_t used;
    waf::http_error err;
    EXPECT_EQ(decode_all(in, step, st, used, err), "hello 0123456789") << step;
    EXPECT_EQ(st, waf::chunked_decoder::status::done);
    EXPECT_EQ(used, in.size() - 4) << "stops at the end of the message";
  }
}

TEST(chunked, refuses_bad_framing) {
  struct c {
    std::string in;
    E want;
  } cases[] = {{"g\r\n", E::bad_chunk_size},
               {"5\nhello\r\n", E::bare_lf},
               {"5\r\nhelloX\r\n", E::bad_chunk_framing},
               {"1234567890abcdef0\r\n", E::bad_chunk_size},
               {"0\r\nX: y\n\r\n", E::bare_lf},
               {"1;" + std::string(300, 'e') + "\r\n", E::chunk_extension_too_long},
               {" 5\r\n", E::bad_chunk_size}};
  for (const auto& k : cases) {
    waf::chunked_decoder::status st;
    size_t used;
    waf::http_error err;
    decode_all(k.in, 3, st, used, err);
    EXPECT_EQ(st, waf::chunked_decoder::status::error) << k.in;
    EXPECT_EQ(err, k.want) << k.in;
  }
}

}  // namespace

// --- response_framer: where each upstream response ends (per-request access log lines) ----------

namespace {

using ev = waf::response_framer::event;

struct framed {
  std::vector<uint16_t> statuses;
  std::vector<uint64_t> sizes;
  ev last = ev::none;
};

// Feeds `stream` in pieces of `step` bytes; `heads` says, per response, whether it answers HEAD.
framed frame(const std::string& stream, size_t step, std::vector<bool> heads = {},
             bool closed = false) {
  waf::response_framer f;
  framed out;
  for (size_t off = 0; off < stream.size();) {
    std::span<const char> piece(stream.data() + off, std::min(step, stream.size() - off));
    while (!piece.empty()) {
      const size_t k = out.statuses.size();
      const auto r = f.feed(piece, k < heads.size() && heads[k]);
      EXPECT_LE(r.used, piece.size());
      piece = piece.subspan(r.used);
      out.last = r.ev;
      if (r.ev == ev::done || r.ev == ev::tunnel) {
        out.statuses.push_back(r.status);
        out.sizes.push_back(r.bytes);
      }
      if (r.ev == ev::lost || r.used == 0) break;
    }
    off += step;
    if (out.last == ev::lost) break;
  }
  if (closed) {
    const auto r = f.close();
    if (r.ev == ev::done) {
      out.statuses.push_back(r.status);
      out.sizes.push_back(r.bytes);
    }
    out.last = r.ev;
  }
  return out;
}

const std::string ok_len = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
const std::string chunked =
    "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\nX-T: 1\r\n\r\n";

}  // namespace

TEST(response_framer, pipelined_responses_at_every_split) {
  const std::string s = ok_len + chunked + "HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n" +
                        "HTTP/1.0 304 Not Modified\r\nContent-Length: 99\r\n\r\n" + ok_len;
  for (size_t step : {1, 2, 3, 7, 64, 4096}) {
    const framed f = frame(s, step);
    EXPECT_EQ(f.statuses, (std::vector<uint16_t>{200, 404, 204, 304, 200})) << "step " << step;
    EXPECT_EQ(f.sizes,
              (std::vector<uint64_t>{ok_len.size(), chunked.size(), 38, 49, ok_len.size()}))
        << "step " << step;
    EXPECT_EQ(f.last, ev::done);
  }
}

TEST(response_framer, head_requests_and_interim_responses_have_no_body) {
  // The answer to HEAD announces a length but sends no body; 100 Continue precedes the final one.
  const std::string head_answer = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
  const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
  const framed f = frame(head_answer + cont + ok_len, 5, {true, false});
  EXPECT_EQ(f.statuses, (std::vector<uint16_t>{200, 200}));
  EXPECT_EQ(f.sizes, (std::vector<uint64_t>{head_answer.size(), cont.size() + ok_len.size()}));
}

TEST(response_framer, upgrade_becomes_a_tunnel) {
  const std::string s =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello HTTP/1.1 200";
  const framed f = frame(s, 9);
  EXPECT_EQ(f.statuses, (std::vector<uint16_t>{101}));
  EXPECT_EQ(f.last, ev::none);  // the frames after the head are not read as HTTP
}

TEST(response_framer, body_until_close) {
  const std::string s = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it";
  EXPECT_EQ(frame(s, 4).statuses, std::vector<uint16_t>{});
  const framed f = frame(s, 4, {}, true);
  EXPECT_EQ(f.statuses, (std::vector<uint16_t>{200}));
  EXPECT_EQ(f.sizes, (std::vector<uint64_t>{s.size()}));
  // A coding other than chunked is also read until the close.
  EXPECT_EQ(frame("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", 3, {}, true).statuses,
            (std::vector<uint16_t>{200}));
}

TEST(response_framer, transfer_encoding_overrides_content_length_in_either_order) {
  for (const std::string& h : {std::string("Transfer-Encoding: gzip\r\nContent-Length: 3\r\n"),
                               std::string("Content-Length: 3\r\nTransfer-Encoding: gzip\r\n")}) {
    const std::string s = "HTTP/1.1 200 OK\r\n" + h + "\r\nabcdefgh";
    EXPECT_EQ(frame(s, 5).statuses, std::vector<uint16_t>{}) << h;  // not done after 3 bytes
    EXPECT_EQ(frame(s, 5, {}, true).sizes, (std::vector<uint64_t>{s.size()})) << h;
  }
  // A Transfer-Encoding line too long to read its last coding: cannot follow.
  const std::string longte = "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + std::string(100, 'x') +
                             ", chunked\r\n\r\n0\r\n\r\n";
  EXPECT_EQ(frame(longte, 7).last, ev::lost);
}

TEST(response_framer, gives_up_on_what_it_cannot_follow) {
  for (const std::string& s :
       {std::string("SSH-2.0-OpenSSH\r\n\r\n"), std::string("HTTP/1.1 2x0 OK\r\n\r\n"),
        std::string("HTTP/2 200\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nno colon\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\rX: y\r\n\r\n"),
        std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}) {
    const framed f = frame(s, 3);
    EXPECT_EQ(f.last, ev::lost) << s;
    EXPECT_TRUE(f.statuses.empty()) << s;
  }
  // A head longer than the bound.
  const std::string big = "HTTP/1.1 200 OK\r\nX: " + std::string(70000, 'a') + "\r\n\r\n";
  EXPECT_EQ(frame(big, 4096).last, ev::lost);
  // Cut short by the close: the response did not complete.
  EXPECT_EQ(frame("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 4, {}, true).last, ev::lost);
  // Nothing pending at the close: nothing to report.
  EXPECT_EQ(frame(ok_len, 4, {}, true).last, ev::none);
}
