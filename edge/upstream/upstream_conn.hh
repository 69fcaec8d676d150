#pragma once
// The upstream half of a relay: one kernel TCP connection to an L7 gateway, driven through the
// worker's io_uring. Connect has a linked timeout and falls over to the next backend of the pool;
// bytes go through bounded per-connection buffers both ways, so a slow side holds back the other
// (recv is only posted while the rx buffer has room; send() takes only what fits).
//
// Lifecycle (all on the owning worker):
//   upstream_conns::open() -> events: connected | error
//   connected: send()/shutdown_write(); events: data (peek()/consume()), fin, writable, error
//   the relay ends it with close() (flush, FIN) or abort() (RST); afterwards the pointer is dead.
//   The object returns to the free list once the kernel has finished with its buffers.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>
#include "common/expected.hh"

#include "byte_ring.hh"
#include "common/counter.hh"
#include "common/enum_text.hh"
#include "common/result.hh"
#include "proxy_v2.hh"
#include "upstream_pool.hh"
#include "uring.hh"

namespace edge::upstream {

// no_backend: nothing healthy to connect to; connect_failed: every attempt was refused or
// unreachable (the last errno is given); connect_timeout: ... and the last one timed out; reset:
// the upstream reset an established connection (ECONNRESET, EPIPE); io_error: any other socket
// error; no_resources: connection objects or sockets exhausted; proxy_header: the PROXY v2 header
// did not fit the tx buffer or was invalid.
#define EDGE_UPSTREAM_ERRORS(X)         \
  X(no_backend, "no_backend")           \
  X(connect_failed, "connect_failed")   \
  X(connect_timeout, "connect_timeout") \
  X(reset, "reset")                     \
  X(io_error, "io_error")               \
  X(no_resources, "no_resources")       \
  X(proxy_header, "proxy_header")
enum class upstream_error : uint8_t { EDGE_UPSTREAM_ERRORS(COMMON_ENUMERATOR) };
const char* to_string(upstream_error e);

class upstream_conn;

// Implemented by the relay. Calls come from uring::poll() on the worker. A handler may call
// close()/abort() on the connection; it must not touch it after that.
class upstream_events {
 public:
  virtual void on_upstream_connected(upstream_conn& c) = 0;
  virtual void on_upstream_data(upstream_conn& c) = 0;      // peek() has bytes
  virtual void on_upstream_fin(upstream_conn& c) = 0;       // upstream sent FIN; send() still works
  virtual void on_upstream_writable(upstream_conn& c) = 0;  // after a short send(): room again
  virtual void on_upstream_error(upstream_conn& c, upstream_error e, int sys_errno) = 0;

 protected:
  ~upstream_events() = default;
};

struct upstream_open {
  upstream_pool* pool = nullptr;
  upstream_events* events = nullptr;
  const proxy_v2_info* proxy = nullptr;  // null: no PROXY header (pool has it off)
  bool by_hash = false;                  // select_by_hash(hash) instead of least connections
  uint64_t hash = 0;                     // e.g. hash of the client 5-tuple
  uint64_t cookie = 0;                   // the relay's own id, returned by cookie()
};

struct conn_pool_config {
  unsigned conns = 1024;             // connection objects per worker
  size_t tx_buffer = 65536;          // relay -> upstream, rounded up to a power of two
  size_t rx_buffer = 65536;          // upstream -> relay
  unsigned drain_timeout_ms = 5000;  // close(): how long queued bytes may take to go before RST
};

struct conn_pool_counters {
  common::counter opened;     // open() calls that started a connection
  common::counter exhausted;  // open() refused: no free connection object
  common::counter in_use;     // level: objects not on the free list (incl. ones still draining)
  common::counter aborted;    // abort() calls
  common::counter closed;     // close() calls
  common::counter drain_timeouts;  // close() could not flush in drain_timeout_ms: reset instead
  common::counter proxy_header_errors;  // open() refused: PROXY v2 header invalid or too large
  common::counter socket_errors;        // open() refused: socket() failed (EMFILE, ENOBUFS, ...)
};

template <class F>
void visit(const conn_pool_counters& c, F&& f) {
  f("opened", c.opened.get());
  f("exhausted", c.exhausted.get());
  f("in_use", c.in_use.get());
  f("aborted", c.aborted.get());
  f("closed", c.closed.get());
  f("drain_timeouts", c.drain_timeouts.get());
  f("proxy_header_errors", c.proxy_header_errors.get());
  f("socket_errors", c.socket_errors.get());
}

class upstream_conns;

class upstream_conn final : public completion_handler {
 public:
  upstream_conn() = default;

  // Queues bytes for the upstream; returns how many fit (the rest: wait for on_upstream_writable).
  // Before the connection is up bytes are queued behind the PROXY header.
  size_t send(std::span<const std::byte> data);
  size_t writable() const { return tx_.space(); }
  // After queued bytes are sent, shutdown(SHUT_WR): the upstream sees FIN (client half-close).
  void shutdown_write();

  // Received bytes not yet consumed, the contiguous part at the cursor (call again after consume).
  std::span<const std::byte> peek() const { return rx_.read_region(); }
  size_t readable() const { return rx_.size(); }
  void consume(size_t n);

  // Flush queued bytes, FIN, release. No more events.
  void close();
  // RST (SO_LINGER 0), drop queued bytes, release. No more events.
  void abort();

  bool connected() const { return state_ == state::connected; }
  bool fin_received() const { return fin_received_; }
  size_t backend_index() const { return backend_; }
  unsigned attempts() const { return attempts_; }
  uint64_t cookie() const { return cookie_; }
  upstream_pool* pool() const { return pool_; }

  void on_completion(uint16_t tag, int32_t res, uint32_t cqe_flags) override;
  void on_room() override;

 private:
  friend class upstream_conns;
  enum class state : uint8_t { free, connecting, connected, failed, draining, closing };
  enum tag : uint16_t {
    tag_connect,
    tag_connect_timeout,
    tag_send,
    tag_recv,
    tag_cancel,
    tag_drain_timer,
    tag_timer_remove
  };
  enum class attempt_result : uint8_t { started, no_backend, sys_error };

  attempt_result attempt();
  void submit_connect();
  void connect_done();
  void post_send();
  void post_recv();
  void maybe_shutdown();
  void fail(upstream_error e, int err);
  void io_failed(int res);
  void finish_close(bool reset);
  void maybe_reclaim();
  void count_bytes(bool to_upstream, uint64_t n);

  uring* ring_ = nullptr;
  upstream_conns* owner_ = nullptr;
  upstream_pool* pool_ = nullptr;
  upstream_events* events_ = nullptr;
  uint64_t cookie_ = 0;
  uint64_t hash_ = 0;
  uint32_t gen_ = 0;  // bumped on reuse: a handler that released us must not be touched again
  state state_ = state::free;
  bool by_hash_ = false;
  bool relay_owned_ = false;  // events may be delivered
  bool send_inflight_ = false;
  bool recv_inflight_ = false;
  bool need_connect_ = false;
  bool need_send_ = false;
  bool need_recv_ = false;
  bool need_cancel_ = false;
  bool need_timer_remove_ = false;
  bool drain_timer_armed_ = false;
  bool write_blocked_ = false;
  bool shut_wr_requested_ = false;
  bool shut_wr_done_ = false;
  bool fin_received_ = false;
  bool timed_out_ = false;
  bool active_counted_ = false;
  uint8_t connect_phase_ = 0;  // CQEs still due for connect + link timeout
  int32_t connect_res_ = 0;
  int fd_ = -1;
  unsigned inflight_ = 0;
  uint64_t drain_timer_ud_ = 0;
  unsigned attempts_ = 0;
  size_t backend_ = no_backend;
  size_t tried_[8]{};
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  __kernel_timespec timeout_{};
  byte_ring tx_;
  byte_ring rx_;
};

// The per-worker set of connection objects and their buffers, allocated once at start.
class upstream_conns {
 public:
  static common::result<std::unique_ptr<upstream_conns>> create(uring& ring,
                                                                const conn_pool_config& cfg);
  // Resets open connections and waits (up to 2 s) for their in-flight ops. Destroy before the ring.
  ~upstream_conns();
  upstream_conns(const upstream_conns&) = delete;
  upstream_conns& operator=(const upstream_conns&) = delete;

  // Starts a connection. Immediate failures (no free object, no healthy backend, socket() error,
  // header too large) come back here and are counted; later ones through on_upstream_error.
  common::expected<upstream_conn*, upstream_error> open(const upstream_open& o);

  const conn_pool_counters& counters() const { return counters_; }
  size_t free_count() const { return free_.size(); }
  size_t capacity() const { return count_; }

 private:
  friend class upstream_conn;
  upstream_conns() = default;
  void reclaim(upstream_conn* c);

  uring* ring_ = nullptr;
  size_t count_ = 0;
  std::unique_ptr<upstream_conn[]> conns_;
  std::unique_ptr<std::byte[]> buffers_;
  std::vector<upstream_conn*> free_;
  __kernel_timespec drain_timeout_{};
  conn_pool_counters counters_;
};

}  // namespace edge::upstream
