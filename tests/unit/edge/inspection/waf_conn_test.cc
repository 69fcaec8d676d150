// edge::waf_conn over the shipped rules: what the relay forwards upstream, what the client gets
// when a request is blocked, and what lands in the worker's audit ring.
#include <gtest/gtest.h>

#include <cstring>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "edge/inspection/waf_conn.hh"
#include "edge/inspection/waf_metrics.hh"
#include "rules/loader.hh"

namespace {

namespace fs = std::filesystem;
using edge::waf_action;
using kind = waf_action::kind;

std::shared_ptr<const waf::ruleset> shipped() {
  static auto rs = [] {
    auto r = rules::compile_rules_dir(RULES_SHIPPED_DIR);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().str());
    return r ? *r : nullptr;
  }();
  return rs;
}

std::shared_ptr<const waf::bound_policy> bind(std::shared_ptr<const waf::ruleset> rs,
                                              waf::policy p = {}) {
  auto b = waf::bound_policy::bind(std::move(rs), std::move(p));
  EXPECT_TRUE(b.has_value()) << (b ? "" : b.error().str());
  return b ? *b : nullptr;
}

const edge::waf_conn_info info{edge::waf_endpoint::v4({192, 0, 2, 7}, 51000),
                               edge::waf_endpoint::v4({203, 0, 113, 1}, 443), "web"};

struct outcome {
  kind last = kind::need_more;
  uint16_t status = 0;
  std::string forwarded;  // concatenation of every forward span, in order
  std::string response;   // block response bytes
  bool reset = false;
  std::string request_id;
  size_t actions = 0;
};

// Feeds the segments as a relay would (loop until each segment is consumed), then FIN.
outcome drive(edge::waf_conn& c, const std::vector<std::string>& segs, bool fin = true) {
  outcome o;
  auto take = [&](const waf_action& a) {
    ++o.actions;
    o.last = a.what;
    for (auto s : a.forward) o.forwarded.append(s.data(), s.size());
    if (a.what == kind::block) {
      o.status = a.status;
      o.response.assign(a.response.data(), a.response.size());
      o.reset = a.reset;
      o.request_id = std::string(c.last_request_id());
    }
  };
  for (const auto& s : segs) {
    std::span<const char> d(s.data(), s.size());
    while (!d.empty()) {
      auto a = c.feed(d);
      take(a);
      if (a.what == kind::block) return o;
      d = d.subspan(a.consumed);
    }
  }
  if (fin) take(c.finish());
  return o;
}

std::vector<std::string> split(const std::string& s, size_t step) {
  std::vector<std::string> v;
  for (size_t i = 0; i < s.size(); i += step) v.push_back(s.substr(i, step));
  return v;
}

std::vector<edge::waf_audit_record> drain(edge::waf_audit_ring& ring) {
  std::vector<edge::waf_audit_record> out(ring.capacity());
  out.resize(ring.pop(out));
  return out;
}

struct fixture : ::testing::Test {
  edge::waf_audit_ring ring{64};
  std::unique_ptr<edge::waf_worker> w;
  void SetUp() override {
    ASSERT_TRUE(shipped());
    auto r = edge::waf_worker::create(3, *shipped(), &ring);
    ASSERT_TRUE(r.has_value());
    w = std::move(*r);
  }
  edge::waf_conn conn(std::shared_ptr<const waf::bound_policy> p,
                      waf::inspector::mode m = waf::inspector::mode::http) {
    auto c = edge::waf_conn::create(*w, std::move(p), m, info);
    EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().str());
    return std::move(*c);
  }
};

const std::string clean_get =
    "GET /products?id=42&sort=price HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\n\r\n";
const std::string json_body = "{\"item\":\"book\",\"qty\":2,\"note\":\"gift wrap\"}";
const std::string clean_post =
    "POST /api/orders HTTP/1.1\r\nHost: shop.example\r\nContent-Type: "
    "application/json\r\nContent-Length: " +
    std::to_string(json_body.size()) + "\r\n\r\n" + json_body;
const std::string sqli_get =
    "GET /search?q=1%27%20union%20select%20password%20from%20users HTTP/1.1\r\nHost: a\r\n\r\n";
const std::string xss_get =
    "GET /c?msg=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\r\nHost: a\r\n\r\n";

TEST_F(fixture, clean_requests_pass_byte_exact_whatever_the_segmentation) {
  auto pol = bind(shipped());
  for (size_t step : {size_t{1}, size_t{3}, size_t{17}, size_t{4096}}) {
    auto c = conn(pol);
    auto o = drive(c, split(clean_get, step));
    EXPECT_EQ(o.forwarded, clean_get) << "step " << step;
    EXPECT_FALSE(c.blocked());
    auto c2 = conn(pol);
    auto o2 = drive(c2, split(clean_post, step));
    EXPECT_EQ(o2.forwarded, clean_post) << "step " << step;  // head + body
    EXPECT_FALSE(c2.blocked());
  }
  EXPECT_TRUE(drain(ring).empty());
  EXPECT_EQ(w->stats().blocked_rules.get(), 0u);
  EXPECT_GE(w->stats().passed.get(), 8u);
}

TEST_F(fixture, sqli_and_xss_get_403_with_request_id_and_audit_record) {
  auto pol = bind(shipped());
  for (const auto& req : {sqli_get, xss_get}) {
    auto c = conn(pol);
    auto o = drive(c, {req});
    ASSERT_EQ(o.last, kind::block) << req;
    EXPECT_EQ(o.status, 403);
    EXPECT_TRUE(o.forwarded.empty()) << "nothing of a blocked request goes upstream";
    EXPECT_FALSE(o.reset);
    ASSERT_EQ(o.request_id.size(), 16u);
    EXPECT_EQ(o.request_id.substr(0, 4), "0003");  // worker id
    EXPECT_TRUE(o.response.starts_with("HTTP/1.1 403 Forbidden\r\n")) << o.response;
    EXPECT_NE(o.response.find("X-Request-Id: " + o.request_id + "\r\n"), std::string::npos)
        << o.response;
    EXPECT_NE(o.response.find("Connection: close"), std::string::npos);
    EXPECT_NE(o.response.find(o.request_id + "\n"), std::string::npos) << "id in the body too";
    // A blocked connection stays blocked: more bytes get the same answer.
    auto again = c.feed(std::span<const char>(clean_get.data(), clean_get.size()));
    EXPECT_EQ(again.what, kind::block);
    EXPECT_TRUE(again.forward.empty());
    auto recs = drain(ring);
    ASSERT_FALSE(recs.empty());
    bool any_blocking = false;
    for (const auto& r : recs) {
      EXPECT_EQ(r.verdict, edge::waf_audit_verdict::block);
      EXPECT_EQ(r.status, 403);
      EXPECT_EQ(r.request_id_text(), o.request_id);
      EXPECT_EQ(r.service_name(), "web");
      EXPECT_EQ(r.client.str(), "192.0.2.7:51000");
      EXPECT_EQ(r.vip.str(), "203.0.113.1:443");
      any_blocking |= r.blocking;
      auto j = edge::waf_audit_json(r);
      EXPECT_NE(j.find("\"rule_id\":" + std::to_string(r.rule_id)), std::string::npos);
    }
    EXPECT_TRUE(any_blocking);
    if (req == sqli_get) {
      EXPECT_EQ(recs[0].rule_id, 100100u);
      EXPECT_EQ(recs[0].field_name(), "q");
      EXPECT_NE(recs[0].excerpt_text().find("union select"), std::string_view::npos);
    } else {
      EXPECT_GE(recs[0].rule_id, 100200u);
      EXPECT_LT(recs[0].rule_id, 100300u);
    }
  }
  EXPECT_EQ(w->stats().blocked_rules.get(), 2u);
}

TEST_F(fixture, detect_only_passes_byte_exact_and_audits) {
  waf::policy p;
  p.detect_only = true;
  auto c = conn(bind(shipped(), p));
  auto o = drive(c, split(sqli_get, 5));
  EXPECT_EQ(o.forwarded, sqli_get);
  EXPECT_FALSE(c.blocked());
  auto recs = drain(ring);
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs[0].rule_id, 100100u);
  EXPECT_EQ(recs[0].verdict, edge::waf_audit_verdict::detect);
  EXPECT_EQ(recs[0].status, 0);
  EXPECT_TRUE(recs[0].detect_only);
  EXPECT_EQ(recs[0].request_id_text().size(), 16u);
  EXPECT_EQ(w->stats().detected.get(), 1u);
}

TEST_F(fixture, body_attack_split_across_feeds_and_chunks_is_caught) {
  auto pol = bind(shipped());
  std::string body = "comment=nice%20product%27%20union%20select%20card%20from%20payments";
  std::string cl =
      "POST /review HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  // Chunked text body: "union select" spread over chunks, each chunk cut into tiny segments.
  std::string chunked =
      "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
      "Transfer-Encoding: chunked\r\n\r\n"
      "6\r\nx' uni\r\n5\r\non se\r\n9\r\nlect pass\r\n0\r\n\r\n";
  for (const auto* req : {&cl, &chunked}) {
    for (size_t step : {size_t{1}, size_t{2}, size_t{7}, size_t{64}}) {
      auto c = conn(pol);
      auto o = drive(c, split(*req, step));
      EXPECT_EQ(o.last, kind::block) << "step " << step << " in " << *req;
      EXPECT_EQ(o.status, 403);
      auto recs = drain(ring);
      ASSERT_FALSE(recs.empty());
      EXPECT_EQ(recs[0].rule_id, 100100u);
      // The head went upstream before the body revealed the attack; the relay closes both sides.
      EXPECT_TRUE(req->starts_with(o.forwarded));
      EXPECT_LT(o.forwarded.size(), req->size());
    }
  }
}

TEST_F(fixture, smuggling_cl_te_gets_400_and_a_protocol_audit_record) {
  auto c = conn(bind(shipped()));
  std::string req =
      "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n";
  auto o = drive(c, {req});
  ASSERT_EQ(o.last, kind::block);
  EXPECT_EQ(o.status, 400);
  EXPECT_TRUE(o.response.starts_with("HTTP/1.1 400 Bad Request\r\n")) << o.response;
  EXPECT_TRUE(o.forwarded.empty());
  auto recs = drain(ring);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].rule_id, 0u);
  EXPECT_EQ(recs[0].field_name(), "content_length_and_transfer_encoding");
  EXPECT_NE(edge::waf_audit_json(recs[0]).find("\"variable\":\"protocol\""), std::string::npos);
}

TEST_F(fixture, truncated_request_at_fin_gets_400) {
  auto c = conn(bind(shipped()));
  auto o = drive(c, {"GET / HTTP/1.1\r\nHost: a\r\n"});
  EXPECT_EQ(o.last, kind::block);
  EXPECT_EQ(o.status, 400);
  auto c2 = conn(bind(shipped()));
  auto o2 = drive(c2, {clean_get});  // FIN between requests is a clean close
  EXPECT_NE(o2.last, kind::block);
}

TEST_F(fixture, body_over_limit_rejects_413_or_passes_partial_per_policy) {
  std::string body(300, 'a');
  std::string req =
      "POST /up HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 300\r\n\r\n" +
      body;
  waf::policy rej;
  rej.body_limit = 100;
  auto c = conn(bind(shipped(), rej));
  auto o = drive(c, split(req, 50));
  ASSERT_EQ(o.last, kind::block);
  EXPECT_EQ(o.status, 413);
  EXPECT_TRUE(o.response.starts_with("HTTP/1.1 413 ")) << o.response;
  auto recs = drain(ring);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].rule_id, 0u);
  EXPECT_EQ(recs[0].status, 413);
  EXPECT_TRUE(recs[0].field_name() == "body_limit" || recs[0].field_name() == "body_too_large")
      << recs[0].field_name();

  waf::policy part = rej;
  part.on_body_limit = waf::body_limit_action::inspect_partial;
  auto c2 = conn(bind(shipped(), part));
  auto o2 = drive(c2, split(req, 50));
  EXPECT_EQ(o2.forwarded, req);
  EXPECT_FALSE(c2.blocked());
  EXPECT_EQ(w->stats().body_partial.get(), 1u);
  EXPECT_EQ(w->stats().blocked_body_limit.get(), 1u);
}

TEST_F(fixture, pipelined_requests_pass_in_order_then_an_attack_is_blocked) {
  auto pol = bind(shipped());
  std::string two = clean_get + clean_post;
  auto c = conn(pol);
  auto o = drive(c, {two}, false);
  EXPECT_EQ(o.forwarded, two);
  EXPECT_GE(o.actions, 2u) << "one action per request, so each head span stays valid";

  auto c2 = conn(pol);
  auto o2 = drive(c2, {clean_get + sqli_get + clean_get});
  EXPECT_EQ(o2.forwarded, clean_get);
  EXPECT_EQ(o2.status, 403);
  auto recs = drain(ring);
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs[0].path_text(), "/search");
}

// The access log's per-request notes: one per request in order, with what the head said, the
// bytes the WAF took, and the verdict; a blocked request's note carries the WAF's own answer.
TEST_F(fixture, access_log_notes_each_request_with_its_verdict) {
  edge::waf_conn_info li = info;
  li.log_requests = true;
  auto pol = bind(shipped());
  for (size_t step : {1, 7, 4096}) {
    auto made = edge::waf_conn::create(*w, pol, waf::inspector::mode::http, li);
    ASSERT_TRUE(made.has_value());
    edge::waf_conn& c = *made;
    const std::string head_req = "HEAD /h HTTP/1.0\r\nHost: b\r\nUser-Agent: t/1\r\n\r\n";
    auto o = drive(c, split(clean_get + clean_post + head_req + xss_get, step), false);
    EXPECT_EQ(o.status, 403);
    edge::request_log* rl = c.requests();
    ASSERT_NE(rl, nullptr);
    ASSERT_EQ(rl->size(), 4u) << "step " << step;
    const edge::request_note& g = *rl->front();
    EXPECT_STREQ(g.method.data(), "GET");
    EXPECT_STREQ(g.path.data(), "/products?id=42&sort=price");
    EXPECT_STREQ(g.authority.data(), "shop.example");
    EXPECT_EQ(g.bytes_in, clean_get.size());
    EXPECT_EQ(g.status, 0);
    EXPECT_EQ(g.waf, edge::access_waf::pass);
    EXPECT_NE(g.start_ns, 0u);
    EXPECT_EQ(strlen(g.request_id.data()), 16u);
    rl->pop_front();
    EXPECT_STREQ(rl->front()->method.data(), "POST");
    EXPECT_EQ(rl->front()->bytes_in, clean_post.size());
    rl->pop_front();
    const edge::request_note& h = *rl->front();
    EXPECT_TRUE(h.head_method);
    EXPECT_EQ(h.minor_version, 0);
    EXPECT_STREQ(h.user_agent.data(), "t/1");
    rl->pop_front();
    const edge::request_note& x = *rl->front();
    EXPECT_STREQ(x.path.data(), "/c?msg=%3Cscript%3Ealert(1)%3C/script%3E");
    EXPECT_EQ(x.waf, edge::access_waf::block);
    EXPECT_EQ(x.status, 403);
    EXPECT_EQ(x.bytes_out, o.response.size());
    EXPECT_STREQ(x.request_id.data(), o.request_id.c_str())
        << "the line and the audit record share the id";
  }
  // Without log_requests there is no note (and no allocation for them).
  auto plain = conn(pol);
  EXPECT_EQ(plain.requests(), nullptr);
  drain(ring);
}

// A request the parser refuses still gets a note: no method or path, the 400 it got.
TEST_F(fixture, access_log_notes_a_request_refused_before_its_head_parsed) {
  edge::waf_conn_info li = info;
  li.log_requests = true;
  auto made = edge::waf_conn::create(*w, bind(shipped()), waf::inspector::mode::http, li);
  ASSERT_TRUE(made.has_value());
  auto o = drive(*made, {"GET / HTTP/1.1\nHost: a\n\n"});
  EXPECT_EQ(o.status, 400);
  ASSERT_EQ(made->requests()->size(), 1u);
  EXPECT_EQ(made->requests()->front()->status, 400);
  EXPECT_STREQ(made->requests()->front()->method.data(), "");
  EXPECT_EQ(made->requests()->front()->minor_version, 255) << "no head: protocol unknown";
  drain(ring);
}

// A request whose response already came (its line written, its note gone) gets no second, bare
// note when its body is then refused; more than request_log::depth waiting stops the matching.
TEST_F(fixture, access_log_notes_once_and_stops_matching_past_its_depth) {
  edge::waf_conn_info li = info;
  li.log_requests = true;
  auto made = edge::waf_conn::create(*w, bind(shipped()), waf::inspector::mode::http, li);
  ASSERT_TRUE(made.has_value());
  auto o = drive(*made, {clean_post.substr(0, clean_post.size() - 5)}, false);
  ASSERT_EQ(made->requests()->size(), 1u);
  made->requests()->pop_front();  // the upstream answered early; the relay wrote its line
  auto fin = made->finish();
  EXPECT_EQ(fin.status, 400) << "the body was cut short";
  EXPECT_EQ(made->requests()->size(), 0u) << "no second line for the same request";

  auto many = edge::waf_conn::create(*w, bind(shipped()), waf::inspector::mode::http, li);
  ASSERT_TRUE(many.has_value());
  std::string six;
  for (int i = 0; i < 6; ++i) six += clean_get;
  drive(*many, {six}, false);
  EXPECT_EQ(many->requests()->size(), edge::request_log::depth);
  EXPECT_EQ(many->requests()->overflow(), 2u);
  EXPECT_TRUE(many->requests()->lost) << "responses can no longer be matched to requests";
  drain(ring);
}

TEST_F(fixture, request_ids_are_unique_per_worker_and_carry_the_worker) {
  edge::waf_audit_ring ring2{64};
  auto w2 = edge::waf_worker::create(0x1f, *shipped(), &ring2);
  ASSERT_TRUE(w2.has_value());
  auto pol = bind(shipped());
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto c = conn(pol);
    ids.push_back(drive(c, {sqli_get}).request_id);
    auto c2 = edge::waf_conn::create(**w2, pol, waf::inspector::mode::http, info);
    ASSERT_TRUE(c2.has_value());
    ids.push_back(drive(*c2, {sqli_get}).request_id);
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end());
  EXPECT_EQ(ids.front().substr(0, 4), "0003");
  EXPECT_EQ(ids.back().substr(0, 4), "001f");
}

// A relay with back-pressure: the client buffer is released only through take_consumed() (and
// released bytes are erased, so a span still pointing at them would forward wrong bytes); the
// upstream takes at most up_cap bytes per round, and client bytes keep arriving in between.
struct sim_result {
  std::string upstream;
  uint16_t status = 0;
};
sim_result relay_sim(edge::waf_conn& c, const std::string& stream, size_t seg, size_t up_cap) {
  sim_result r;
  std::string buf;
  buf.reserve(stream.size());  // arrivals never move the bytes, like the TCP receive buffer
  size_t pos = 0;
  for (;;) {
    bool progress = false;
    if (auto p = c.pending(); !p.empty()) {
      size_t n = std::min(up_cap, p.size());
      r.upstream.append(p.data(), n);
      c.sent(n);
      progress = true;
    } else if (size_t rel = c.take_consumed(); rel > 0) {
      buf.erase(0, rel);
      progress = true;
    } else if (!buf.empty()) {
      auto a = c.feed({buf.data(), buf.size()});
      if (a.what == kind::block) {
        r.status = a.status;
        return r;
      }
      progress = a.consumed > 0 || !a.forward.empty();
    }
    if (!progress) {
      if (pos >= stream.size()) break;
      buf.append(stream, pos, seg);
      pos += seg;
    }
  }
  auto a = c.finish();
  if (a.what == kind::block) r.status = a.status;
  for (auto p = c.pending(); !p.empty(); p = c.pending()) {
    r.upstream.append(p.data(), p.size());
    c.sent(p.size());
  }
  return r;
}

TEST_F(fixture, back_pressure_partial_sends_keep_the_stream_byte_exact) {
  auto pol = bind(shipped());
  std::string chunked =
      "POST /u HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nTransfer-Encoding: "
      "chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  std::string stream = clean_get + clean_post + chunked + clean_get;
  for (size_t seg : {size_t{1}, size_t{5}, size_t{64}, size_t{100000}}) {
    for (size_t cap : {size_t{1}, size_t{3}, size_t{1000}}) {
      auto c = conn(pol);
      auto r = relay_sim(c, stream, seg, cap);
      EXPECT_EQ(r.status, 0) << "seg " << seg << " cap " << cap;
      EXPECT_EQ(r.upstream, stream) << "seg " << seg << " cap " << cap;
    }
  }
  // The client bytes are released only once everything that points into them went upstream.
  auto c0 = conn(pol);
  auto a = c0.feed({clean_post.data(), clean_post.size()});
  ASSERT_EQ(a.what, kind::forward);
  ASSERT_FALSE(c0.pending().empty());
  EXPECT_EQ(c0.take_consumed(), 0u);
  c0.sent(3);
  EXPECT_EQ(c0.take_consumed(), 0u);
  std::string got = clean_post.substr(0, 3);
  for (auto p = c0.pending(); !p.empty(); p = c0.pending()) {
    got.append(p.data(), p.size());
    c0.sent(p.size());
  }
  EXPECT_EQ(got, clean_post);
  EXPECT_EQ(c0.take_consumed(), a.consumed);
  EXPECT_EQ(c0.take_consumed(), 0u);

  auto c = conn(pol);
  auto r = relay_sim(c, clean_get + sqli_get, 7, 2);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.upstream, clean_get);
}

// Arbitrary client bytes: every feed() makes progress or blocks (a relay loop cannot spin), and
// nothing crashes; the verdict is a 400 or a pass.
TEST_F(fixture, random_bytes_always_progress_and_end_in_a_named_outcome) {
  auto pol = bind(shipped());
  std::mt19937 rng(42);
  static constexpr char chars[] =
      "GET POST / HTTP/1.1\r\n:Host a=b%27<>;\x00\xff"
      "0123456789chunked\tTransfer-Encoding";
  const std::string alphabet(chars, sizeof chars - 1);
  for (int iter = 0; iter < 300; ++iter) {
    std::string junk;
    size_t len = rng() % 600;
    bool printable = iter % 2 == 0;
    for (size_t i = 0; i < len; ++i)
      junk += printable ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng() & 0xff);
    if (iter % 3 == 0) junk = clean_get + junk;
    auto c = conn(pol);
    std::span<const char> d(junk.data(), junk.size());
    bool blocked = false;
    while (!d.empty()) {
      size_t step = std::min<size_t>(d.size(), 1 + rng() % 64);
      auto a = c.feed(d.first(step));
      if (a.what == kind::block) {
        blocked = true;
        EXPECT_TRUE(a.status == 400 || a.status == 403 || a.status == 413) << a.status;
        EXPECT_FALSE(a.response.empty());
        break;
      }
      ASSERT_GT(a.consumed, 0u) << "no progress at iteration " << iter;
      d = d.subspan(a.consumed);
    }
    if (!blocked) {
      auto a = c.finish();
      EXPECT_TRUE(a.what != kind::block || a.status == 400);
    }
  }
  drain(ring);
}

TEST_F(fixture, figures_per_connection_state) {
  auto c = conn(bind(shipped()));
  std::printf(
      "[ figures ] waf_conn: %zu B object + %zu B inspector state (HTTP, shipped rules); "
      "audit record %zu B\n",
      sizeof(edge::waf_conn), c.inspector().state_bytes(), sizeof(edge::waf_audit_record));
  EXPECT_LT(c.inspector().state_bytes(), 64u * 1024);
}

// /metrics by service and rule id: what a worker counts per connection, summed by service name.
TEST_F(fixture, requests_and_rule_matches_are_counted_by_service) {
  auto web_pol = bind(shipped());
  waf::policy dp;
  dp.detect_only = true;
  auto api_pol = bind(shipped(), dp);
  const edge::waf_conn_info api_info{info.client, info.vip, "api"};
  auto c1 = conn(web_pol);
  drive(c1, {clean_get});
  auto c2 = conn(web_pol);
  auto o2 = drive(c2, {sqli_get});
  ASSERT_EQ(o2.status, 403);
  auto web_recs = drain(ring);
  ASSERT_FALSE(web_recs.empty());
  auto c3 = edge::waf_conn::create(*w, api_pol, api_info);
  ASSERT_TRUE(c3.has_value());
  auto o3 = drive(*c3, {xss_get});
  EXPECT_EQ(o3.forwarded, xss_get);
  auto api_recs = drain(ring);
  ASSERT_FALSE(api_recs.empty());

  ASSERT_EQ(w->services(), 2u);
  EXPECT_EQ(w->service_name(0), "web");
  EXPECT_EQ(w->service_stats(0).inspected.get(), 2u);
  EXPECT_EQ(w->service_stats(0).blocked.get(), 1u);
  EXPECT_EQ(w->service_stats(0).detected.get(), 0u);
  EXPECT_EQ(w->service_stats(1).inspected.get(), 1u);
  EXPECT_EQ(w->service_stats(1).detected.get(), 1u);
  EXPECT_EQ(w->service_stats(1).blocked.get(), 0u);

  // Two workers' tables summed: the same worker twice doubles every figure.
  const edge::waf_worker* ws[] = {w.get(), w.get()};
  edge::prom_text::writer page;
  edge::append_waf_service_metrics(page, ws);
  const std::string& text = page.text();
  for (const auto& want : {"edge_waf_service_inspected_total{service=\"web\"} 4\n",
                           "edge_waf_service_blocked_total{service=\"web\"} 2\n",
                           "edge_waf_service_detected_total{service=\"web\"} 0\n",
                           "edge_waf_service_inspected_total{service=\"api\"} 2\n",
                           "edge_waf_service_detected_total{service=\"api\"} 2\n",
                           "edge_waf_rule_matches_uncounted_total 0\n"})
    EXPECT_NE(text.find(want), std::string::npos) << want << " in\n" << text;
  for (const auto& r : web_recs)
    EXPECT_NE(text.find("edge_waf_rule_matches_total{service=\"web\",rule=\"" +
                        std::to_string(r.rule_id) + "\"} 2\n"),
              std::string::npos)
        << r.rule_id << " in\n"
        << text;
  for (const auto& r : api_recs)
    EXPECT_NE(text.find("edge_waf_rule_matches_total{service=\"api\",rule=\"" +
                        std::to_string(r.rule_id) + "\"} 2\n"),
              std::string::npos)
        << r.rule_id << " in\n"
        << text;
}

TEST(waf_rule_counts, a_full_table_counts_what_it_could_not_key) {
  edge::waf_rule_counts t;
  for (uint32_t id = 1; id <= edge::waf_rule_counts::capacity; ++id) t.add(3, id);
  t.add(3, 17);  // an existing key still counts
  EXPECT_EQ(t.full(), 0u);
  t.add(4, 1);  // a new key with no room
  EXPECT_EQ(t.full(), 1u);
  size_t keys = 0;
  uint64_t total = 0;
  t.visit([&](uint16_t svc, uint32_t, uint64_t n) {
    EXPECT_EQ(svc, 3u);
    ++keys;
    total += n;
  });
  EXPECT_EQ(keys, edge::waf_rule_counts::capacity);
  EXPECT_EQ(total, edge::waf_rule_counts::capacity + 1);
}

// A rules dir with one raw_payload rule (id 900, "EVIL-CMD", block) in set `raw`, plus `extra`.
common::result<std::shared_ptr<const waf::ruleset>> raw_rules(const std::string& extra = "") {
  auto dir = fs::temp_directory_path() / ("edge_waf_raw_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "raw.yaml") << "rules:\n"
                                     "  - id: 900\n"
                                     "    phase: raw_payload\n"
                                     "    pattern: \"EVIL-CMD\"\n"
                                     "    action: block\n";
  if (!extra.empty()) std::ofstream(dir / "extra.yaml") << extra;
  auto rs = rules::compile_rules_dir(dir.string());
  fs::remove_all(dir);
  return rs;
}

// Raw (non-HTTP) services: raw_payload rules over the stream; block means RST, no response bytes.
TEST(waf_conn_raw, raw_payload_match_split_across_segments_resets) {
  auto rs = raw_rules();
  ASSERT_TRUE(rs.has_value()) << rs.error().str();
  edge::waf_audit_ring ring{16};
  auto w = edge::waf_worker::create(1, **rs, &ring);
  ASSERT_TRUE(w.has_value());
  auto pol = bind(*rs);
  std::string clean = "HELLO\nPING\nDATA 1234\n";
  auto c = edge::waf_conn::create(**w, pol, waf::inspector::mode::raw, info);
  ASSERT_TRUE(c.has_value());
  auto o = drive(*c, split(clean, 4));
  EXPECT_EQ(o.forwarded, clean);
  EXPECT_FALSE(c->blocked());

  std::string bad = "HELLO\nRUN EVIL-CMD now\n";
  auto c2 = edge::waf_conn::create(**w, pol, waf::inspector::mode::raw, info);
  ASSERT_TRUE(c2.has_value());
  auto o2 = drive(*c2, split(bad, 3));
  ASSERT_EQ(o2.last, kind::block);
  EXPECT_TRUE(o2.reset);
  EXPECT_TRUE(o2.response.empty());
  EXPECT_TRUE(bad.starts_with(o2.forwarded));
  EXPECT_LT(o2.forwarded.size(), bad.find("EVIL-CMD") + 8);
  std::vector<edge::waf_audit_record> recs(16);
  recs.resize(ring.pop(recs));
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].rule_id, 900u);
  EXPECT_TRUE(recs[0].raw);
  EXPECT_EQ(recs[0].verdict, edge::waf_audit_verdict::block);
}

// The policy chooses the mode: `inspect: raw` runs the raw_payload rules over whatever the client
// sends (no HTTP parsing); without it the same bytes are an HTTP protocol error.
TEST(waf_conn_raw, the_policy_key_inspect_raw_selects_raw_mode) {
  auto rs = raw_rules();
  ASSERT_TRUE(rs.has_value()) << rs.error().str();
  edge::waf_audit_ring ring{16};
  auto w = edge::waf_worker::create(1, **rs, &ring);
  ASSERT_TRUE(w.has_value());
  auto raw_pol = rules::parse_policy(YAML::Load("name: mqtt\ninspect: raw\n"), "p.yaml");
  ASSERT_TRUE(raw_pol.has_value()) << raw_pol.error().str();
  EXPECT_EQ(raw_pol->inspect, waf::inspect_mode::raw);
  using namespace std::string_literals;
  const std::string clean = "\x10\x0c\x00\x04MQTT\x04\x02\x00<\x00\x00"s;  // NULs included
  ASSERT_EQ(clean.size(), 14u);
  auto c = edge::waf_conn::create(**w, bind(*rs, *raw_pol), info);
  ASSERT_TRUE(c.has_value());
  auto o = drive(*c, split(clean, 5));
  EXPECT_EQ(o.forwarded, clean) << "a binary, non-HTTP stream passes byte-exact in raw mode";
  EXPECT_FALSE(c->blocked());
  auto c2 = edge::waf_conn::create(**w, bind(*rs, *raw_pol), info);
  auto o2 = drive(*c2, {"PUBLISH x EVIL-", "CMD"});
  EXPECT_EQ(o2.last, kind::block);
  EXPECT_TRUE(o2.reset) << "raw block: RST, no HTTP response";

  auto http_pol = rules::parse_policy(YAML::Load("name: web\n"), "p.yaml");
  ASSERT_TRUE(http_pol.has_value());
  EXPECT_EQ(http_pol->inspect, waf::inspect_mode::http);
  auto c3 = edge::waf_conn::create(**w, bind(*rs, *http_pol), info);
  auto o3 = drive(*c3, split(clean, 5));
  EXPECT_EQ(o3.status, 400) << "the same bytes on an HTTP policy are a malformed request";
  EXPECT_FALSE(o3.reset);
}

TEST(waf_conn_raw, bad_inspect_values_and_raw_policies_without_raw_rules_are_refused) {
  auto bad = rules::parse_policy(YAML::Load("name: x\ninspect: binary\n"), "p.yaml");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().str(), "p.yaml:2:10: policy x: unknown inspect 'binary' (http, raw)");
  // The shipped rules have no raw_payload rule: a raw policy over them would inspect nothing.
  waf::policy p;
  p.name = "tcp-raw";
  p.inspect = waf::inspect_mode::raw;
  auto b = waf::bound_policy::bind(shipped(), p);
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().message,
            "policy tcp-raw: inspect raw, but none of its rules has phase raw_payload");
  // Nor when the only raw rule is outside the policy's rule sets or above its paranoia level.
  auto rs = raw_rules(
      "set: deep\nrules:\n  - id: 901\n    phase: raw_payload\n    pattern: x\n    paranoia: 3\n");
  ASSERT_TRUE(rs.has_value()) << rs.error().str();
  p.paranoia = 2;
  p.rule_sets = {"deep"};
  EXPECT_FALSE(waf::bound_policy::bind(*rs, p).has_value());
  p.paranoia = 3;
  EXPECT_TRUE(waf::bound_policy::bind(*rs, p).has_value());
}

}  // namespace
