// The request body processors on their own: every case is fed whole, split in two at every byte,
// and one byte at a time; the fields, the error and the flags must not depend on the split.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "waf/body.hh"

namespace {

using waf::body_error;
using waf::multipart_flag;

struct collect final : waf::body_sink {
  std::vector<std::string> ev;
  void arg(std::string_view n, std::string_view v, bool t) override {
    ev.push_back("arg " + std::string(n) + "=" + std::string(v) + (t ? " (cut)" : ""));
  }
  void file(std::string_view f, std::string_view name, uint64_t size) override {
    ev.push_back("file " + std::string(f) + "=" + std::string(name) + " " + std::to_string(size));
  }
  void part_header(std::string_view part, std::string_view line) override {
    ev.push_back("hdr " + std::string(part) + ": " + std::string(line));
  }
};

struct result {
  std::vector<std::string> ev;
  body_error err = body_error::none;
  uint32_t flags = 0;
  bool operator==(const result& o) const { return ev == o.ev && err == o.err && flags == o.flags; }
};

std::string show(const result& r) {
  std::string s =
      std::string("error ") + waf::to_string(r.err) + ", flags " + std::to_string(r.flags) + "\n";
  for (const auto& e : r.ev) s += "  " + e + "\n";
  return s;
}

struct buffers {
  std::unique_ptr<char[]> mem;
  waf::field_buffer fb;
  explicit buffers(const waf::body_limits& l)
      : mem(std::make_unique<char[]>(l.max_name_bytes + l.max_value_bytes)) {
    fb.name = mem.get();
    fb.name_cap = l.max_name_bytes;
    fb.value = mem.get() + l.max_name_bytes;
    fb.value_cap = l.max_value_bytes;
  }
};

// Runs one processor over `segments` (a split of the body).
template <class P>
result run(P& p, const std::vector<std::string_view>& segments) {
  collect c;
  result r;
  bool ok = true;
  for (auto s : segments)
    if (ok) ok = p.feed(s.data(), s.size(), c);
  if (ok) p.finish(c);
  r.ev = c.ev;
  r.err = p.error();
  if constexpr (std::is_same_v<P, waf::multipart_parser>) r.flags = p.flags();
  return r;
}

enum class kind { urlencoded, multipart, json };

result run_kind(kind k, std::string_view ct, const waf::body_limits& lim,
                const std::vector<std::string_view>& segs) {
  buffers b(lim);
  switch (k) {
    case kind::urlencoded: {
      waf::urlencoded_parser p;
      p.start(&b.fb, lim);
      return run(p, segs);
    }
    case kind::multipart: {
      auto p = std::make_unique<waf::multipart_parser>();
      if (!p->start(ct, &b.fb, lim)) return result{{}, p->error(), p->flags()};
      return run(*p, segs);
    }
    case kind::json: {
      auto p = std::make_unique<waf::json_parser>();
      p->start(&b.fb, lim);
      return run(*p, segs);
    }
  }
  return {};
}

// Whole, every two-way split, one byte at a time: all must agree with the expectation.
void check_splits(kind k, std::string_view ct, std::string_view body, const result& want,
                  const waf::body_limits& lim = {}) {
  result whole = run_kind(k, ct, lim, {body});
  EXPECT_EQ(whole, want) << "whole body\n got:  " << show(whole) << " want: " << show(want);
  for (size_t i = 1; i < body.size(); ++i) {
    result r = run_kind(k, ct, lim, {body.substr(0, i), body.substr(i)});
    ASSERT_EQ(r, want) << "split at " << i << "\n got:  " << show(r) << " want: " << show(want);
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < body.size(); ++i) bytes.push_back(body.substr(i, 1));
  result r = run_kind(k, ct, lim, bytes);
  EXPECT_EQ(r, want) << "byte by byte\n got:  " << show(r) << " want: " << show(want);
}

uint32_t flags(std::initializer_list<multipart_flag> fs) {
  uint32_t v = 0;
  for (auto f : fs) v |= waf::flag_bit(f);
  return v;
}

TEST(body, processor_is_chosen_by_content_type_as_modsecurity_does) {
  struct row {
    const char* ct;
    waf::body_processor want;
  } rows[] = {
      {"application/x-www-form-urlencoded", waf::body_processor::urlencoded},
      {"Application/X-WWW-Form-Urlencoded; charset=UTF-8", waf::body_processor::urlencoded},
      {"multipart/form-data; boundary=x", waf::body_processor::multipart},
      {"MULTIPART/FORM-DATA;boundary=x", waf::body_processor::multipart},
      {"application/json", waf::body_processor::json},
      {"application/json; charset=utf-8", waf::body_processor::json},
      {"text/plain", waf::body_processor::none},
      {"application/xml", waf::body_processor::none},
      {"multipart/mixed; boundary=x", waf::body_processor::none},
      {"", waf::body_processor::none},
  };
  for (const auto& r : rows) EXPECT_EQ(waf::processor_for(r.ct), r.want) << r.ct;
}

TEST(body, urlencoded_pairs_split_anywhere) {
  struct row {
    const char* what;
    std::string body;
    result want;
  } rows[] = {
      {"two pairs", "a=1&b=2", {{"arg a=1", "arg b=2"}}},
      {"decoded", "n%61me=x+y%27%20OR%201", {{"arg name=x y' OR 1"}}},
      {"empty pieces skipped", "&&a=&b&=c&", {{"arg a=", "arg b=", "arg =c"}}},
      {"equals in value", "q=a=b", {{"arg q=a=b"}}},
      {"long value (no head-room cut)",
       "v=" + std::string(40000, 'x') + "attack",
       {{"arg v=" + std::string(40000, 'x') + "attack"}}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    if (r.body.size() > 1000) {
      EXPECT_EQ(run_kind(kind::urlencoded, "", {}, {r.body}), r.want);
      continue;
    }
    check_splits(kind::urlencoded, "", r.body, r.want);
  }
}

TEST(body, urlencoded_limits) {
  waf::body_limits lim;
  lim.max_value_bytes = 64;
  lim.max_name_bytes = 16;
  lim.max_args = 2;
  EXPECT_EQ(run_kind(kind::urlencoded, "", lim, {"q=" + std::string(70, 'A')}),
            (result{{"arg q=" + std::string(64, 'A') + " (cut)"}}));
  EXPECT_EQ(run_kind(kind::urlencoded, "", lim, {std::string(20, 'n') + "=1"}),
            (result{{"arg " + std::string(16, 'n') + "=1 (cut)"}}));
  auto r = run_kind(kind::urlencoded, "", lim, {"a=1&b=2&c=3"});
  EXPECT_EQ(r.err, body_error::too_many_args);
  EXPECT_EQ(r.ev.size(), 2u);
}

constexpr const char* ct = "multipart/form-data; boundary=XyZ";

TEST(body, multipart_parts_become_fields_and_files_split_anywhere) {
  // File content that looks like a delimiter, holds NUL and high bytes, CR and LF: only counted.
  const std::string file_content = std::string("<script>\r\n--Xy\r\nA--XyZ-\r") +
                                   std::string(1, '\0') + "\xff union select\r\n-";
  struct row {
    const char* what;
    const char* ct;
    std::string body;
    result want;
  } rows[] = {
      {"field and file",
       ct,
       "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nbob' OR 1=1--\r\n"
       "--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.bin\"\r\n"
       "Content-Type: application/octet-stream\r\n\r\n" +
           file_content + "\r\n--XyZ--\r\n",
       {{"hdr user: Content-Disposition: form-data; name=\"user\"", "arg user=bob' OR 1=1--",
         "hdr up: Content-Disposition: form-data; name=\"up\"; filename=\"a.bin\"",
         "hdr up: Content-Type: application/octet-stream",
         "file up=a.bin " + std::to_string(file_content.size())}}},
      {"empty field, CR and LF inside a value",
       ct,
       "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n"
       "--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nx\ry\nz\r\n--XyZ--",
       {{"hdr a: Content-Disposition: form-data; name=a",
         "arg a=", "hdr b: Content-Disposition: form-data; name=\"b\"", "arg b=x\ry\nz"}}},
      {"quoted boundary (flagged)",
       "multipart/form-data; boundary=\"XyZ\"",
       "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n",
       {{"hdr a: Content-Disposition: form-data; name=\"a\"", "arg a=1"},
        body_error::none,
        flags({multipart_flag::boundary_quoted})}},
      {"whitespace around the boundary's '=' (flagged)",
       "multipart/form-data; boundary = XyZ",
       "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n",
       {{"hdr a: Content-Disposition: form-data; name=\"a\"", "arg a=1"},
        body_error::none,
        flags({multipart_flag::boundary_whitespace})}},
      {"data before the first boundary and after the last",
       ct,
       "junk\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZ--\r\nmore",
       {{"hdr a: Content-Disposition: form-data; name=\"a\"", "arg a=1"},
        body_error::none,
        flags({multipart_flag::data_before, multipart_flag::data_after})}},
      {"LF-only lines",
       ct,
       "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\n1\n--XyZ--\n",
       {{"hdr a: Content-Disposition: form-data; name=\"a\"", "arg a=1"},
        body_error::none,
        flags({multipart_flag::lf_line})}},
      {"folded part header",
       ct,
       "--XyZ\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n",
       {{"hdr a: Content-Disposition: form-data; name=\"a\"", "arg a=1"},
        body_error::none,
        flags({multipart_flag::header_folding})}},
      {"missing semicolon",
       ct,
       "--XyZ\r\nContent-Disposition: form-data name=\"a\"\r\n\r\n1\r\n--XyZ--\r\n",
       {{"hdr a: Content-Disposition: form-data name=\"a\"", "arg a=1"},
        body_error::none,
        flags({multipart_flag::missing_semicolon})}},
      {"single-quoted name",
       ct,
       "--XyZ\r\nContent-Disposition: form-data; name='a'\r\n\r\n1\r\n--XyZ--\r\n",
       {{"hdr a: Content-Disposition: form-data; name='a'", "arg a=1"},
        body_error::none,
        flags({multipart_flag::invalid_quoting})}},
      {"escaped quote in a file name",
       ct,
       "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; "
       "filename=\"a\\\"b.php\"\r\n\r\n<?php\r\n--XyZ--",
       {{"hdr f: Content-Disposition: form-data; name=\"f\"; filename=\"a\\\"b.php\"",
         "file f=a\"b.php 5"}}},
      {"no final boundary",
       ct,
       "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1",
       {{"hdr a: Content-Disposition: form-data; name=\"a\""},
        body_error::multipart_final_boundary_missing}},
      {"no boundary at all",
       ct,
       "a=1&b=2",
       {{}, body_error::multipart_final_boundary_missing, flags({multipart_flag::data_before})}},
      {"part without Content-Disposition",
       ct,
       "--XyZ\r\nContent-Type: text/plain\r\n\r\n1\r\n--XyZ--",
       {{}, body_error::multipart_no_disposition, flags({multipart_flag::invalid_part})}},
      {"header line without a colon",
       ct,
       "--XyZ\r\nContent-Disposition form-data\r\n\r\n1\r\n--XyZ--",
       {{}, body_error::multipart_header_line, flags({multipart_flag::invalid_part})}},
      {"not form-data",
       ct,
       "--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--XyZ--",
       {{}, body_error::multipart_bad_disposition, flags({multipart_flag::invalid_part})}},
      {"duplicate name parameter",
       ct,
       "--XyZ\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\n1\r\n--XyZ--",
       {{}, body_error::multipart_bad_disposition, flags({multipart_flag::invalid_part})}},
      {"unterminated quote",
       ct,
       "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\n1\r\n--XyZ--",
       {{},
        body_error::multipart_bad_disposition,
        flags({multipart_flag::invalid_part, multipart_flag::invalid_quoting})}},
      {"junk after a boundary",
       ct,
       "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XyZjunk\r\n",
       {{"hdr a: Content-Disposition: form-data; name=\"a\"", "arg a=1"},
        body_error::multipart_boundary_line,
        flags({multipart_flag::unmatched_boundary})}},
      {"folding with nothing to fold into",
       ct,
       "--XyZ\r\n name=\"a\"\r\n\r\n1\r\n--XyZ--",
       {{},
        body_error::multipart_header_line,
        flags({multipart_flag::header_folding, multipart_flag::invalid_header_folding})}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    check_splits(kind::multipart, r.ct, r.body, r.want);
  }
}

TEST(body, multipart_boundary_parameter_is_checked) {
  struct row {
    const char* ct;
    body_error want;
  } rows[] = {
      {"multipart/form-data", body_error::multipart_no_boundary},
      {"multipart/form-data; boundary=", body_error::multipart_bad_boundary},
      {"multipart/form-data; boundary=a; boundary=b", body_error::multipart_bad_boundary},
      {"multipart/form-data; boundary=\"abc", body_error::multipart_bad_boundary},
      {"multipart/form-data; boundary=a\"b", body_error::multipart_bad_boundary},
      {"multipart/form-data; boundary=a{b}", body_error::multipart_bad_boundary},
      {"multipart/form-data; "
       "boundary=01234567890123456789012345678901234567890123456789012345678901234567890",
       body_error::multipart_bad_boundary},
      {"multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW", body_error::none},
  };
  for (const auto& r : rows) {
    buffers b(waf::body_limits{});
    auto p = std::make_unique<waf::multipart_parser>();
    p->start(r.ct, &b.fb, {});
    EXPECT_EQ(p->error(), r.want) << r.ct;
  }
}

TEST(body, multipart_limits_bound_headers_and_files) {
  waf::body_limits lim;
  lim.max_files = 1;
  std::string two_files =
      "--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"1\"\r\n\r\nA\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"g\"; filename=\"2\"\r\n\r\nBB\r\n--XyZ--";
  // One file part too many: flagged (MULTIPART_FILE_LIMIT_EXCEEDED) and a body error, so that
  // thousands of tiny file parts cannot each buy their FILES and part-header scans.
  auto r = run_kind(kind::multipart, ct, lim, {two_files});
  EXPECT_EQ(r.err, body_error::multipart_too_many_files);
  EXPECT_EQ(r.flags, flags({multipart_flag::file_limit_exceeded}));
  // A part header area of more than 4 KiB, or more than 32 header lines, is an error (bounded).
  std::string big =
      "--XyZ\r\nContent-Disposition: form-data; name=\"" + std::string(5000, 'n') + "\"\r\n\r\n";
  EXPECT_EQ(run_kind(kind::multipart, ct, lim, {big}).err, body_error::multipart_headers_too_large);
  std::string many = "--XyZ\r\n";
  for (int i = 0; i < 40; ++i) many += "X-H: 1\r\n";
  EXPECT_EQ(run_kind(kind::multipart, ct, lim, {many}).err,
            body_error::multipart_headers_too_large);
  // A field longer than the value room is cut (and says so); a file of any size is only counted.
  lim.max_value_bytes = 64;
  std::string long_field =
      "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n" + std::string(100, 'v') +
      "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\n" +
      std::string(100000, 'F') + "\r\n--XyZ--";
  r = run_kind(kind::multipart, ct, lim, {long_field});
  ASSERT_EQ(r.ev.size(), 4u) << show(r);
  EXPECT_EQ(r.ev[1], "arg a=" + std::string(64, 'v') + " (cut)");
  EXPECT_EQ(r.ev[3], "file f=x 100000");
  lim.max_args = 1;
  std::string two_fields =
      "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
      "--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n--XyZ--";
  EXPECT_EQ(run_kind(kind::multipart, ct, lim, {two_fields}).err, body_error::too_many_args);
}

TEST(body, json_values_are_named_by_path_as_libmodsecurity_names_them) {
  struct row {
    const char* what;
    std::string body;
    result want;
  } rows[] = {
      {"flat object", R"({"a":"1","b":2})", {{"arg json.a=1", "arg json.b=2"}}},
      {"nested", R"({"a":{"b":"c"}})", {{"arg json.a.b=c"}}},
      {"array in object",
       R"({"arr":[1,"x"]})",
       {{"arg json.arr.array_0=1", "arg json.arr.array_1=x"}}},
      {"objects in a root array",
       R"([{"x":1},{"x":2}])",
       {{"arg json.array_0.x=1", "arg json.array_1.x=2"}}},
      {"nested arrays",
       R"({"m":[[1,2],[3]]})",
       {{"arg json.m.array_0.array_0=1", "arg json.m.array_0.array_1=2",
         "arg json.m.array_1.array_0=3"}}},
      {"after a nested container",
       R"({"a":{"b":1},"c":[true,false,null],"d":"e"})",
       {{"arg json.a.b=1", "arg json.c.array_0=true", "arg json.c.array_1=false",
         "arg json.c.array_2=", "arg json.d=e"}}},
      {"empty key", R"({"":"v"})", {{"arg json.empty-key=v"}}},
      {"escapes",
       R"({"k\"ey":"a\nb\u0041\u00e9\ud83d\ude00"})",
       {{"arg json.k\"ey=a\nbA\xc3\xa9\xf0\x9f\x98\x80"}}},
      {"root scalar", R"("' OR 1=1")", {{"arg json=' OR 1=1"}}},
      {"root number", "-12.5e3", {{"arg json=-12.5e3"}}},
      {"whitespace",
       " { \"a\" : [ 1 , 2 ] } \r\n",
       {{"arg json.a.array_0=1", "arg json.a.array_1=2"}}},
      {"empty containers", R"({"a":{},"b":[],"c":1})", {{"arg json.c=1"}}},
      {"trailing garbage", R"({"a":1}x)", {{"arg json.a=1"}, body_error::json_syntax}},
      {"missing colon", R"({"a" 1})", {{}, body_error::json_syntax}},
      {"bad literal", R"({"a":tru})", {{}, body_error::json_syntax}},
      {"mismatched closer", R"({"a":[1}})", {{"arg json.a.array_0=1"}, body_error::json_syntax}},
      {"control byte in a string", "{\"a\":\"x\x01\"}", {{}, body_error::json_syntax}},
      {"bad escape", R"({"a":"\x"})", {{}, body_error::json_syntax}},
      {"truncated", R"({"a":[1,)", {{"arg json.a.array_0=1"}, body_error::json_truncated}},
      {"empty body", "", {{}, body_error::json_truncated}},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.what);
    check_splits(kind::json, "", r.body, r.want);
  }
}

TEST(body, json_limits_bound_depth_count_and_lengths) {
  waf::body_limits lim;
  lim.max_json_depth = 8;
  std::string deep(9, '[');
  EXPECT_EQ(run_kind(kind::json, "", lim, {deep}).err, body_error::json_depth);
  std::string ok = std::string(8, '[') + "1" + std::string(8, ']');
  EXPECT_EQ(run_kind(kind::json, "", lim, {ok}).err, body_error::none);
  // The hard ceiling holds whatever the policy says.
  lim.max_json_depth = 100000;
  std::string very_deep(300, '[');
  EXPECT_EQ(run_kind(kind::json, "", lim, {very_deep}).err, body_error::json_depth);
  lim = {};
  lim.max_args = 3;
  EXPECT_EQ(run_kind(kind::json, "", lim, {"[1,2,3,4]"}).err, body_error::too_many_args);
  // Empty containers yield no argument but are bounded by the same count.
  EXPECT_EQ(run_kind(kind::json, "", lim, {"[[],{},[]]"}).err, body_error::too_many_args);
  EXPECT_EQ(run_kind(kind::json, "", lim, {"[[],{}]"}).err, body_error::none);
  lim = {};
  lim.max_value_bytes = 64;
  lim.max_name_bytes = 16;
  auto r = run_kind(kind::json, "", lim, {R"({"a":")" + std::string(100, 'v') + R"("})"});
  EXPECT_EQ(r.ev, std::vector<std::string>{"arg json.a=" + std::string(64, 'v') + " (cut)"});
  r = run_kind(kind::json, "", lim, {R"({")" + std::string(40, 'k') + R"(":1})"});
  EXPECT_EQ(r.ev, std::vector<std::string>{"arg json." + std::string(11, 'k') + "=1 (cut)"});
}

// A value cut short by an error is still handed over (scanned when the policy goes on raw).
TEST(body, partial_field_is_flushed_after_an_error) {
  buffers b(waf::body_limits{});
  waf::json_parser j;
  j.start(&b.fb, {});
  collect c;
  std::string body = "{\"q\":\"1' UNION SELECT\x01";
  EXPECT_FALSE(j.feed(body.data(), body.size(), c));
  j.flush_partial(c);
  EXPECT_EQ(c.ev, std::vector<std::string>{"arg json.q=1' UNION SELECT"});

  auto m = std::make_unique<waf::multipart_parser>();
  ASSERT_TRUE(m->start(ct, &b.fb, {}));
  collect d;
  std::string mp = "--XyZ\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\n1' UNION SELECT";
  EXPECT_TRUE(m->feed(mp.data(), mp.size(), d));
  EXPECT_FALSE(m->finish(d));
  m->flush_partial(d);
  ASSERT_EQ(d.ev.size(), 2u);
  EXPECT_EQ(d.ev[1], "arg q=1' UNION SELECT");
}

}  // namespace
