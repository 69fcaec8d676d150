#include "skip_exit.hh"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return edge_test::run_all_tests();
}
