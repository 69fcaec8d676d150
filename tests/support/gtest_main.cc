// The main of the test binaries without EAL: GoogleTest, and exit 77 when a test skipped.
#include "skip_exit.hh"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return edge_test::run_all_tests();
}
