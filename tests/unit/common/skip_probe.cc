// Not a test of its own: a binary with one passing and one skipped test, run by the `skip_exit`
// check to show that the project's test mains exit 77 (meson: SKIP) when a test skipped, rather
// than 0 (meson: OK).
#include <gtest/gtest.h>

TEST(skip_probe, passes) {
  EXPECT_EQ(1 + 1, 2);
}

TEST(skip_probe, cannot_run_here) {
  GTEST_SKIP() << "a test that cannot run on this machine";
}
