#pragma once
// The stages of a relayed connection. A service's connections run through a chain that starts at
// the client's TCP connection (the userspace stack) and ends at the upstream (io_uring socket):
//
//   TCP in ─▶ limits ─▶ tls ─▶ waf ─▶ upstream
//
// The ends belong to the relay; the stages between are listed once, in order, in
// EDGE_RELAY_CHAIN below, and each lives in its own file (edge/stage_<name>.cc). At accept a
// connection takes the stages its service applies (a bit mask per connection, so a reload that
// changes the service does not change the chain of the connections it already has).
//
// The relay drives the chain and keeps what every connection shares in one place: the state
// (relay_state), back-pressure (bytes move only as far as the next buffer has room), half-close
// (FINs cross over once every byte before them went through) and reset. A stage says what it
// wants (go on, wait, or end the connection with a named outcome) through the hooks; it never
// frees the connection, because an end takes effect when the event is over (relay::event), so a
// caller up the chain never holds a freed slot.
//
// Adding a stage: write edge/stage_<name>.cc with a class derived from relay_stage and a factory
// `std::unique_ptr<relay_stage> make_<name>_stage(relay&)`, then add X(<name>) to the chain.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

namespace edge {

class relay;
struct relay_conn;
struct relay_service;
enum class relay_end : uint8_t;

// What a hook tells the relay.
enum class stage_step : uint8_t {
  next,  // done here: the chain goes on
  wait,  // not yet: the stage resumes the connection itself later (a handshake in progress)
  stop,  // the stage ended the connection (relay::end ran): nothing more in this event
};

class relay_stage {
 public:
  virtual ~relay_stage() = default;
  virtual const char* name() const = 0;

  // Whether connections of service `s` take this stage (asked at accept).
  virtual bool applies(const relay_service& s) const = 0;
  // A new connection: take what the stage keeps per connection, or refuse it. A refusal returns
  // its outcome; the relay counts it, resets the client and closes the stages already opened.
  virtual std::optional<relay_end> open(relay_conn&, const relay_service&) { return {}; }
  // On every client event (bytes, FIN, an offload completion), in chain order, before the
  // client's bytes move: next lets them through, wait holds them (the stage resumes the
  // connection), stop means the stage ended it.
  virtual stage_step ready(relay_conn&) { return stage_step::next; }
  // A stage that inspects the client's bytes moves them upstream itself (at most one per chain,
  // the last that says so): it reads the client's bytes as the stages before it produce them and
  // sends what it lets through, as far as the upstream buffer takes it. next: every byte it could
  // move moved (the relay then passes the client's FIN on); wait: held (back-pressure or a stage
  // decision pending); stop: it ended the connection.
  virtual bool filters() const { return false; }
  virtual stage_step client_bytes(relay_conn&) { return stage_step::next; }
  // Upstream bytes are about to go to the client: wait holds them in the upstream buffer (a
  // WebSocket answer the WAF has not seen yet), stop means the stage ended the connection.
  virtual stage_step upstream_ready(relay_conn&) { return stage_step::next; }
  // Upstream bytes that reached the client (the access log frames responses here).
  virtual void sent_to_client(relay_conn&, std::span<const std::byte>) {}
  // The connection's slot goes back (end of the event it ended in), in reverse chain order; also
  // after a refused open, so close must undo a partial open.
  virtual void close(relay_conn&) {}
};

// The chain, in order: one line per stage. limits comes first, so that a connection it refuses
// costs no TLS session or WAF state (a flood is what those limits shed).
#define EDGE_RELAY_CHAIN(X) \
  X(limits)                 \
  X(tls)                    \
  X(waf)

#define EDGE_RELAY_STAGE_FACTORY(name) std::unique_ptr<relay_stage> make_##name##_stage(relay& r);
EDGE_RELAY_CHAIN(EDGE_RELAY_STAGE_FACTORY)
#undef EDGE_RELAY_STAGE_FACTORY

inline constexpr size_t relay_stage_max = 8;  // bits in relay_conn::stages
#define EDGE_RELAY_STAGE_COUNT(name) +1
static_assert(0 EDGE_RELAY_CHAIN(EDGE_RELAY_STAGE_COUNT) <= relay_stage_max,
              "more stages than relay_conn::stages has bits");
#undef EDGE_RELAY_STAGE_COUNT

}  // namespace edge
