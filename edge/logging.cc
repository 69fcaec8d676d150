#include "edge/logging.hh"

#include <spdlog/async.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "common/json.hh"

namespace edge {

namespace {

// Formats the message part of a JSON log line with proper escaping.
class json_message_flag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string e = common::json_escape(
        std::string_view(msg.payload.data(), msg.payload.size()), common::json_bytes::keep_utf8);
    dest.append(e.data(), e.data() + e.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_message_flag>();
  }
};

}  // namespace

common::result<void> setup_logging(const logging_config& c) {
  try {
    spdlog::init_thread_pool(8192, 1);
    spdlog::sink_ptr sink;
    if (c.file.empty())
      sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    else
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(c.file);
    // Overflow drops the oldest line rather than blocking the caller.
    auto logger = std::make_shared<spdlog::async_logger>(
        "edged", sink, spdlog::thread_pool(), spdlog::async_overflow_policy::overrun_oldest);
    auto formatter = std::make_unique<spdlog::pattern_formatter>(
        c.format == log_format::json ? spdlog::pattern_time_type::utc
                                     : spdlog::pattern_time_type::local);
    if (c.format == log_format::json) {
      formatter->add_flag<json_message_flag>('*').set_pattern(
          R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%*"})");
    } else {
      formatter->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    }
    logger->set_formatter(std::move(formatter));
    logger->set_level(spdlog::level::from_str(c.level));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
  } catch (const spdlog::spdlog_ex& e) {
    return common::fail(std::string("logging: ") + e.what(), c.file);
  }
  return {};
}

void shutdown_logging() {
  spdlog::shutdown();
}

}  // namespace edge
