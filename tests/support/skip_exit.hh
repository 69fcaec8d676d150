#pragma once
// RUN_ALL_TESTS for the project's test mains: a binary in which a test called GTEST_SKIP exits with
// meson's skip code (77), so meson reports it SKIP, never OK (tests/run.sh fails the run on a
// skip: every suite must run on the CI machine).
#include <gtest/gtest.h>

#include <cstdio>

namespace edge_test {

inline int run_all_tests() {
  const int rc = RUN_ALL_TESTS();
  if (rc != 0) return rc;
  const int skipped = ::testing::UnitTest::GetInstance()->skipped_test_count();
  if (skipped > 0) {
    std::fprintf(stderr, "%d test(s) skipped: exit 77 (meson: SKIP)\n", skipped);
    return 77;
  }
  return 0;
}

}  // namespace edge_test
