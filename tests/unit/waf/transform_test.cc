// Each transformation, with ModSecurity's results for the inputs CRS cares about.
#include <gtest/gtest.h>

#include <string>

#include "waf/transform.hh"

namespace {

std::string run(waf::transform t, std::string in) {
  std::string tmp(in.size() * 4 + 16, '\0');
  std::string buf = in;
  buf.resize(in.size() * 4 + 16);
  size_t n = waf::apply_transform(t, buf.data(), in.size(), buf.size(), tmp.data());
  buf.resize(n);
  return buf;
}

struct tcase {
  waf::transform t;
  const char* in;
  std::string out;
};

class transform_table : public ::testing::TestWithParam<tcase> {};

TEST_P(transform_table, matches_expected) {
  const auto& c = GetParam();
  EXPECT_EQ(run(c.t, c.in), c.out) << waf::to_string(c.t) << "(" << c.in << ")";
}

using T = waf::transform;
INSTANTIATE_TEST_SUITE_P(
    all, transform_table,
    ::testing::Values(
        tcase{T::url_decode, "a%20b+c", "a b c"},
        tcase{T::url_decode, "%27%3Cscript%3E", "'<script>"},
        tcase{T::url_decode, "%u0027%uff1cx", "'<x"},  // %u with full-width folding
        tcase{T::url_decode, "bad%zz%4", "bad%zz%4"}, tcase{T::url_decode, "%", "%"},
        tcase{T::lowercase, "SeLeCt ÄB", "select Äb"},
        tcase{T::normalize_path, "/a/./b/../../../etc//passwd", "/etc/passwd"},
        tcase{T::normalize_path, "a/b/../c/", "a/c/"}, tcase{T::normalize_path, "/x/..", "/"},
        tcase{T::normalize_path_win, "\\a\\..\\..\\windows\\win.ini", "/windows/win.ini"},
        // As ModSecurity: a relative path keeps the ".." it cannot resolve (CRS 930120 looks for
        // "/boot.ini" in "../../boot.ini"); no trailing slash the input did not have.
        tcase{T::normalize_path, "../../../../../boot.ini", "../../../../../boot.ini"},
        tcase{T::normalize_path, "a/../../b", "../b"}, tcase{T::normalize_path, "a/b/..", "a"},
        tcase{T::normalize_path, "./../x/./y/", "../x/y/"},
        tcase{T::normalize_path_win, "..\\..\\win.ini", "../../win.ini"},
        tcase{T::html_entity_decode, "&lt;script&gt;&#x61;&#98;&quot;&amp;&nbsp;&bogus;",
              "<script>ab\"& &bogus;"},
        tcase{T::html_entity_decode, "&#60&#x3C", "<<"},
        tcase{T::compress_whitespace, "a \t\r\n b  c", "a b c"},
        tcase{T::remove_whitespace, " a b\tc\n", "abc"},
        tcase{T::base64_decode, "PHNjcmlwdD4=", "<script>"},
        tcase{T::base64_decode, "YWJj!ignored", "abc"},
        tcase{T::utf8_to_unicode, "a\xc3\xa9z", "a%u00e9z"},
        tcase{T::utf8_to_unicode, "plain", "plain"},
        tcase{T::js_decode, "\\x3cscript\\u003e\\101\\n", "<script>A\n"},
        tcase{T::css_decode, "\\6a\\61 vascript", "javascript"},
        tcase{T::cmd_line, "C^at  '/ETC/PASSWD' ; ls,x", "cat/etc/passwd ls x"},
        tcase{T::replace_comments, "un/**/ion/* x */select/* open", "un ion select "},
        tcase{T::trim, "  x y \t", "x y"}, tcase{T::length, "", "0"},
        tcase{T::length, "abc\xc3\xa9", "5"}, tcase{T::hex_encode, "<a\x01\xff", "3c6101ff"},
        tcase{T::hex_encode, "", ""},
        tcase{T::sha1, "abc",
              "\xa9\x99\x3e\x36\x47\x06\x81\x6a\xba\x3e"
              "\x25\x71\x78\x50\xc2\x6c\x9c\xd0\xd8\x9d"}));

TEST(transform, remove_nulls_keeps_other_bytes) {
  std::string in("a\0b\0c", 5);
  std::string buf = in;
  size_t n = waf::apply_transform(T::remove_nulls, buf.data(), buf.size(), buf.size(), nullptr);
  EXPECT_EQ(std::string(buf.data(), n), "abc");
}

TEST(transform, pipeline_applies_in_order) {
  std::string buf = "%3CSCRIPT%3E";
  waf::transform ts[] = {T::url_decode, T::lowercase};
  size_t n = waf::apply_transforms(ts, buf.data(), buf.size(), buf.size(), nullptr);
  EXPECT_EQ(std::string(buf.data(), n), "<script>");
}

// CRS writes t:sha1,t:hexEncode: the digest as 40 lowercase hex digits (ModSecurity's output).
TEST(transform, sha1_then_hex_encode_is_the_hex_digest) {
  waf::transform ts[] = {T::sha1, T::hex_encode};
  for (auto [in, want] :
       {std::pair<std::string, std::string>{"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"}}) {
    std::string buf = in;
    buf.resize(64);
    size_t n = waf::apply_transforms(ts, buf.data(), in.size(), buf.size(), nullptr);
    EXPECT_EQ(buf.substr(0, n), want) << in;
  }
}

// hex_encode doubles the length: past the buffer it stops, whole bytes only, as utf8_to_unicode.
TEST(transform, hex_encode_stops_at_cap) {
  std::string buf = "abcd";
  buf.resize(7);
  size_t n = waf::apply_transform(T::hex_encode, buf.data(), 4, buf.size(), nullptr);
  EXPECT_EQ(buf.substr(0, n), "616263");
}

// The streaming url_decode must give the same bytes however the input is split, including inside
// a %XX or %uXXXX escape.
TEST(transform, stream_url_decode_equals_block_for_every_split) {
  const std::string in = "a%3Cb%u003Cc%2%zz+d%u00";
  waf::transform ts[] = {T::url_decode, T::lowercase, T::compress_whitespace};
  std::string whole = in;
  size_t wn = waf::apply_transforms(ts, whole.data(), whole.size(), whole.size(), nullptr);
  whole.resize(wn);
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    waf::stream_transform_state st;
    std::string out;
    char buf[256];
    size_t n1 = waf::stream_transform(ts, st, in.data(), cut, buf, false);
    out.append(buf, n1);
    size_t n2 = waf::stream_transform(ts, st, in.data() + cut, in.size() - cut, buf, true);
    out.append(buf, n2);
    EXPECT_EQ(out, whole) << "cut at " << cut;
  }
}

TEST(transform, names_round_trip) {
#define X(e, s) EXPECT_EQ(waf::parse_transform(waf::to_string(T::e)), T::e);
  WAF_TRANSFORMS(X)
#undef X
  EXPECT_FALSE(waf::parse_transform("nope"));
  EXPECT_TRUE(waf::is_streamable(T::url_decode));
  EXPECT_FALSE(waf::is_streamable(T::base64_decode));
}

}  // namespace
