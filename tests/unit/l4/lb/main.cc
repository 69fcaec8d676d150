#include "test_eal.hh"

EDGE_TEST_MAIN_WITH_EAL()
