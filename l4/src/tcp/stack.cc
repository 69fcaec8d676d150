// The public face of the stack: validates the configuration and forwards to the engine.
#include "l4/tcp/stack.hh"

#include "engine.hh"

namespace l4::tcp {

common::result<std::unique_ptr<stack>> stack::create(const config& cfg, rte_mempool* tx_pool,
                                                     app* a) {
  const char* where = "l4::tcp::stack::create";
  if (tx_pool == nullptr || a == nullptr)
    return common::fail("tx mempool and app are required", where);
  if (cfg.max_connections == 0 || cfg.max_connections > (1u << 24))
    return common::fail("max_connections must be 1..16777216", where);
  if (cfg.snd_buf < 4096 || cfg.rcv_buf < 4096 || cfg.snd_buf > (1u << 30) ||
      cfg.rcv_buf > (1u << 30))
    return common::fail("snd_buf and rcv_buf must be 4 KiB..1 GiB", where);
  if (cfg.ooo_max_ranges == 0 || cfg.ooo_max_ranges > max_ooo_ranges)
    return common::fail("ooo_max_ranges must be 1..16", where);
  if (cfg.mtu < 1280 || cfg.mtu > 9216) return common::fail("mtu must be 1280..9216", where);
  if (rte_pktmbuf_data_room_size(tx_pool) < RTE_PKTMBUF_HEADROOM + cfg.mtu + 18u)
    return common::fail("tx mempool data room is smaller than the MTU plus L2 header", where);
  if (cfg.rto_min_ms == 0 || cfg.rto_min_ms > cfg.rto_max_ms || cfg.rto_initial_ms == 0)
    return common::fail("RTO bounds must satisfy 0 < rto_min <= rto_max, rto_initial > 0", where);
  if (cfg.tx_batch == 0) return common::fail("tx_batch must be > 0", where);
  return std::unique_ptr<stack>(new stack(std::make_unique<engine>(cfg, tx_pool, a)));
}

stack::stack(std::unique_ptr<engine> e) : e_(std::move(e)) {}

stack::~stack() {
  rte_mbuf* m[64];
  while (uint16_t n = e_->drain_tx(m, 64)) rte_pktmbuf_free_bulk(m, n);
}

common::result<void> stack::add_listener(const ip_addr& vip, uint16_t port, uint16_t id) {
  return e_->add_listener(vip, port, id);
}
bool stack::remove_listener(const ip_addr& vip, uint16_t port) {
  return e_->remove_listener(vip, port);
}
drop stack::input(rte_mbuf* m, const packet& p) {
  return e_->input(m, p);
}
drop stack::icmp_error(rte_mbuf* m, const packet& p) {
  return e_->icmp_error(m, p);
}
void stack::poll(uint64_t now_tsc) {
  e_->poll(now_tsc);
}
uint16_t stack::drain_tx(rte_mbuf** out, uint16_t cap) {
  return e_->drain_tx(out, cap);
}
uint16_t stack::tx_pending() const {
  return e_->tx_pending();
}
size_t stack::send(conn_handle c, std::span<const uint8_t> b) {
  return e_->send(c, b);
}
size_t stack::send_space(conn_handle c) const {
  return e_->send_space(c);
}
void stack::want_writable(conn_handle c) {
  e_->want_writable(c);
}
size_t stack::recv(conn_handle c, std::span<uint8_t> out) {
  return e_->recv(c, out);
}
size_t stack::readable(conn_handle c) const {
  return e_->readable(c);
}
std::span<const uint8_t> stack::peek(conn_handle c) const {
  return e_->peek(c);
}
void stack::consume(conn_handle c, size_t n) {
  e_->consume(c, n);
}
void stack::shutdown_write(conn_handle c) {
  e_->shutdown_write(c);
}
void stack::abort(conn_handle c) {
  e_->abort(c);
}
void stack::close(conn_handle c) {
  e_->close(c);
}
void stack::close_lingering(conn_handle c) {
  e_->close_lingering(c);
}
size_t stack::open_connections() const {
  return e_->open_connections();
}
size_t stack::abort_all() {
  return e_->abort_all();
}
const conn_info* stack::info(conn_handle c) const {
  return e_->info(c);
}
void stack::set_context(conn_handle c, void* ctx) {
  e_->set_context(c, ctx);
}
void* stack::context(conn_handle c) const {
  return e_->context(c);
}
const counters& stack::stats() const {
  return e_->stats();
}

size_t stack::bytes_per_connection(const config& cfg) {
  size_t flow_slots = 16;
  while (flow_slots < size_t{cfg.max_connections} * 2) flow_slots <<= 1;
  return sizeof(tcb) + cfg.snd_buf + cfg.rcv_buf + map_records(cfg) * sizeof(sent_seg) +
         flow_slots * sizeof(uint32_t) / cfg.max_connections;
}

}  // namespace l4::tcp
