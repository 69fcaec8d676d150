// The shared helpers in common/: JSON string escaping and socket addresses.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

#include "common/enum_text.hh"
#include "common/json.hh"
#include "common/sockaddr.hh"

namespace {

using common::json_bytes;

TEST(json_escape, table) {
  struct row {
    const char* what;
    std::string in;
    json_bytes mode;
    std::string want;
  };
  const row rows[] = {
      {"plain text stays", "GET /a", json_bytes::ascii, "GET /a"},
      {"quote and backslash", "a\"b\\c", json_bytes::ascii, "a\\\"b\\\\c"},
      {"short forms", "\n\r\t", json_bytes::ascii, "\\n\\r\\t"},
      {"other control bytes", std::string("\x01\x1f\0", 3), json_bytes::ascii,
       "\\u0001\\u001f\\u0000"},
      {"DEL and high bytes as \\u00XX in ascii mode", "\x7f\xc3\xa9", json_bytes::ascii,
       "\\u007f\\u00c3\\u00a9"},
      {"UTF-8 kept in keep_utf8 mode", "\x7f\xc3\xa9", json_bytes::keep_utf8, "\x7f\xc3\xa9"},
      {"control bytes escaped in keep_utf8 mode", "\x02\n", json_bytes::keep_utf8, "\\u0002\\n"},
  };
  for (const row& r : rows) {
    EXPECT_EQ(common::json_escape(r.in, r.mode), r.want) << r.what;
    std::string quoted = "x";
    common::json_string(quoted, r.in, r.mode);
    EXPECT_EQ(quoted, "x\"" + r.want + "\"") << r.what;
  }
}

TEST(sock_addr, v4_and_v6) {
  const uint8_t v4[4] = {192, 0, 2, 7};
  const common::sock_addr a = common::make_sock_addr(false, v4, 8080);
  ASSERT_EQ(a.family(), AF_INET);
  ASSERT_EQ(a.len, sizeof(sockaddr_in));
  char text[INET6_ADDRSTRLEN];
  ASSERT_NE(inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a.get())->sin_addr, text,
                      sizeof text),
            nullptr);
  EXPECT_STREQ(text, "192.0.2.7");
  EXPECT_EQ(common::sock_port(a.ss), 8080);

  uint8_t v6[16];
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::1", v6), 1);
  const common::sock_addr b = common::make_sock_addr(true, v6, 443);
  ASSERT_EQ(b.family(), AF_INET6);
  ASSERT_EQ(b.len, sizeof(sockaddr_in6));
  ASSERT_NE(inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(b.get())->sin6_addr, text,
                      sizeof text),
            nullptr);
  EXPECT_STREQ(text, "2001:db8::1");
  EXPECT_EQ(common::sock_port(b.ss), 443);
}

#define TEST_COLOURS(X) X(red, "red") X(dark_green, "dark-green")
enum class colour : unsigned char { TEST_COLOURS(COMMON_ENUMERATOR) };

TEST(enum_text, list_order_and_unknown_value) {
  static constexpr const char* texts[] = {TEST_COLOURS(COMMON_ENUM_TEXT)};
  EXPECT_STREQ(common::enum_text(colour::red, texts), "red");
  EXPECT_STREQ(common::enum_text(colour::dark_green, texts), "dark-green");
  EXPECT_STREQ(common::enum_text(static_cast<colour>(7), texts), "?");
  EXPECT_STREQ(common::enum_text(static_cast<colour>(2), texts, ""), "");
}

}  // namespace
