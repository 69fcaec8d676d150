#pragma once
// spdlog set-up: an async logger (a log thread drains a bounded queue, so callers never wait on
// I/O), text or JSON lines, to stderr or a file. Workers never call it per packet.
#include "common/result.hh"
#include "edge/config.hh"

namespace edge {

common::result<void> setup_logging(const logging_config& c);
void shutdown_logging();

}  // namespace edge
