#pragma once
// GoogleTest environment for tests that need mbufs: EAL without hugepages, PCI or shared files,
// and one packet mempool. Call edge_test::mempool() from a test.
#include <gtest/gtest.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "skip_exit.hh"

namespace edge_test {

inline rte_mempool*& pool_slot() {
  static rte_mempool* p = nullptr;
  return p;
}

inline rte_mempool* mempool() {
  return pool_slot();
}

class eal_env : public ::testing::Environment {
 public:
  void SetUp() override {
    // A per-process file prefix so that test binaries can run in parallel.
    static const std::string prefix = "--file-prefix=edge-test-" + std::to_string(getpid());
    const char* argv[] = {
        "edge-test",   "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
        "-m",          "256",       "-l",       "0",           "--log-level=lib.eal:warning",
        prefix.c_str()};
    int argc = sizeof(argv) / sizeof(argv[0]);
    if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) {
      fprintf(stderr, "rte_eal_init failed: %s\n", rte_strerror(rte_errno));
      std::abort();
    }
    pool_slot() =
        rte_pktmbuf_pool_create("test_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (pool_slot() == nullptr) std::abort();
  }
  void TearDown() override {
    rte_mempool_free(pool_slot());
    rte_eal_cleanup();
  }
};

}  // namespace edge_test

// Each test binary that uses mbufs defines its main with this.
#define EDGE_TEST_MAIN_WITH_EAL()                                  \
  int main(int argc, char** argv) {                                \
    ::testing::InitGoogleTest(&argc, argv);                        \
    ::testing::AddGlobalTestEnvironment(new edge_test::eal_env()); \
    return edge_test::run_all_tests();                             \
  }
