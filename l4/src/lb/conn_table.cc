#include "l4/lb/conn_table.hh"

#include <rte_tcp.h>

#include <sys/mman.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <new>

namespace l4::lb {

namespace {

constexpr size_t huge_page = 2u << 20;

// Zeroed memory, 2 MiB-aligned and advised for transparent huge pages, or nullptr.
void* alloc_huge(size_t bytes) {
  // Huge-page alignment only for tables that span one: a small table (tests, fuzzing) would
  // otherwise cost a 2 MiB allocation and memset.
  const size_t align = bytes >= huge_page ? huge_page : 64;
  const size_t size = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, size);
  if (p == nullptr) return nullptr;
  if (align == huge_page)
    madvise(p, size, MADV_HUGEPAGE);  // advisory: failure only costs TLB misses
  std::memset(p, 0, size);
  return p;
}

}  // namespace

void conn_table::free_deleter::operator()(void* p) const {
  std::free(p);
}

common::result<std::unique_ptr<conn_table>> conn_table::create(uint32_t capacity, conn_timeouts t) {
  if (capacity == 0 || capacity > (1u << 28))
    return common::fail("connection table capacity must be 1 .. 2^28, got " +
                        std::to_string(capacity));
  if (t.tcp_syn == 0 || t.tcp_established == 0 || t.tcp_closing == 0 || t.udp == 0)
    return common::fail("connection table timeouts must be positive");
  std::unique_ptr<conn_table> c(new conn_table());
  c->nbuckets_ = std::bit_ceil((capacity + ways - 1) / ways);
  c->mask_ = c->nbuckets_ - 1;
  const size_t nslots = static_cast<size_t>(c->nbuckets_) * ways;
  void* b = alloc_huge(sizeof(bucket) * c->nbuckets_);  // zero tags: every slot never used
  void* s = alloc_huge(sizeof(conn_entry) * nslots);
  c->buckets_.reset(static_cast<bucket*>(b));
  if (b == nullptr || s == nullptr) {
    std::free(s);
    return common::fail("connection table: out of memory for " + std::to_string(capacity) +
                        " entries");
  }
  static_assert(std::is_trivially_destructible_v<conn_entry>);
  auto* slots = static_cast<conn_entry*>(s);
  for (size_t i = 0; i < nslots; ++i) new (&slots[i]) conn_entry();
  c->slots_.reset(slots);
  c->timeouts_ = t;
  return c;
}

uint64_t conn_table::timeout(conn_state s) const {
  switch (s) {
    case conn_state::tcp_syn:
      return timeouts_.tcp_syn;
    case conn_state::tcp_established:
      return timeouts_.tcp_established;
    case conn_state::tcp_closing:
      return timeouts_.tcp_closing;
    case conn_state::udp:
      return timeouts_.udp;
  }
  return timeouts_.udp;
}

conn_entry* conn_table::find(const flow_key& k, uint64_t h, uint64_t now) {
  const uint16_t tag = tag_of(h);
  for (uint32_t b : {bucket_a(h), bucket_b(h)}) {
    const bucket& bk = buckets_[b];
    for (uint32_t w = 0; w < ways; ++w) {
      if (bk.tag[w] != tag) continue;
      conn_entry& e = slots_[b * ways + w];
      if (e.expires > now && e.key == k) return &e;
    }
  }
  return nullptr;
}

conn_entry* conn_table::insert(const flow_key& k, uint64_t h, conn_state state, uint64_t now) {
  // First choice: a never-used or expired slot in either bucket. Second: the oldest half-open.
  int32_t free_slot = -1, victim = -1;
  uint64_t victim_created = UINT64_MAX;
  for (uint32_t b : {bucket_a(h), bucket_b(h)}) {
    for (uint32_t w = 0; w < ways; ++w) {
      const uint32_t s = b * ways + w;
      if (buckets_[b].tag[w] == 0 || slots_[s].expires <= now) {
        free_slot = static_cast<int32_t>(s);
        break;
      }
      const conn_entry& e = slots_[s];
      if (e.state == conn_state::tcp_syn && e.created < victim_created) {
        victim = static_cast<int32_t>(s);
        victim_created = e.created;
      }
    }
    if (free_slot >= 0) break;
  }
  uint32_t s;
  if (free_slot >= 0) {
    s = static_cast<uint32_t>(free_slot);
    if (buckets_[s / ways].tag[s % ways] != 0) ++stats_.reused_expired;
  } else if (victim >= 0) {
    s = static_cast<uint32_t>(victim);
    erase(slots_[s]);
    ++stats_.evicted_half_open;
  } else {
    ++stats_.refused_full;
    return nullptr;
  }
  buckets_[s / ways].tag[s % ways] = tag_of(h);
  conn_entry& e = slots_[s];
  e = conn_entry{};
  e.key = k;
  e.state = state;
  e.created = now;
  e.expires = now + timeout(state);
  ++stats_.inserts;
  return &e;
}

void conn_table::link(conn_entry& fwd, conn_entry& rep) {
  fwd.peer = slot_of(rep);
  rep.peer = slot_of(fwd);
  rep.state = fwd.state;
  rep.created = fwd.created;
  rep.expires = fwd.expires + timeout(fwd.state) / 4;
  fwd.peer_expires = rep.expires;
  rep.peer_expires = fwd.expires;
}

void conn_table::touch(conn_entry& e, uint8_t tcp_flags, bool from_client, uint64_t now) {
  const conn_state old = e.state;
  conn_state s = old;
  if (s != conn_state::udp) {
    if (tcp_flags & (RTE_TCP_RST_FLAG | RTE_TCP_FIN_FLAG)) {
      s = conn_state::tcp_closing;
    } else if (s == conn_state::tcp_syn && (tcp_flags & RTE_TCP_ACK_FLAG) &&
               (from_client ? !(tcp_flags & RTE_TCP_SYN_FLAG) : true)) {
      // The client's ACK of the handshake (all we see with direct return) or the backend's
      // SYN-ACK (full NAT) shows the backend accepted the flow.
      s = conn_state::tcp_established;
    }
  }
  const uint64_t t = timeout(s);
  e.state = s;
  e.expires = now + t;
  if (e.peer == conn_entry::none) return;
  const bool is_fwd = e.kind == conn_kind::nat_forward;
  // Forward: keep the reply entry at least as long (with a quarter timeout of slack). Reply:
  // keep the forward entry within a quarter timeout of it (never beyond it).
  const bool due =
      s != old || (is_fwd ? e.expires > e.peer_expires : e.expires > e.peer_expires + t / 4);
  if (!due) return;
  conn_entry& p = slots_[e.peer];
  if (p.peer != slot_of(e)) {  // the peer's slot was reused: we are on our own now
    e.peer = conn_entry::none;
    return;
  }
  p.state = s;
  p.expires = is_fwd ? e.expires + t / 4 : e.expires;
  e.peer_expires = p.expires;
  p.peer_expires = e.expires;
}

void conn_table::erase(conn_entry& e) {
  e.expires = 0;
  if (e.peer != conn_entry::none) {
    conn_entry& p = slots_[e.peer];
    if (p.peer == slot_of(e)) {
      p.expires = 0;
      p.peer = conn_entry::none;
    }
    e.peer = conn_entry::none;
  }
}

uint32_t conn_table::live(uint64_t now) const {
  uint32_t n = 0;
  for (uint32_t s = 0; s < capacity(); ++s)
    if (buckets_[s / ways].tag[s % ways] != 0 && slots_[s].expires > now) ++n;
  return n;
}

}  // namespace l4::lb
