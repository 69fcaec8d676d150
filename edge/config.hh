#pragma once
// edged's configuration: the YAML schema as C++ structs, and the strict loader. Every error names
// the file, line and column of the offending key or value; nothing starts on a bad config.
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "common/enum_text.hh"
#include "common/result.hh"
#include "l4/ip_addr.hh"
#include "tls/config.hh"

namespace edge {

enum class port_role : uint8_t { wan, lan };
#define EDGE_SERVICE_KINDS(X) X(l4, "l4") X(tcp, "tcp") X(tls, "tls")
enum class service_kind : uint8_t { EDGE_SERVICE_KINDS(COMMON_ENUMERATOR) };
enum class log_format : uint8_t { text, json };
#define EDGE_FORWARDING_MODES(X) X(fnat, "fnat") X(ipip, "ipip") X(gue, "gue")
enum class forwarding_mode : uint8_t { EDGE_FORWARDING_MODES(COMMON_ENUMERATOR) };
enum class balance_mode : uint8_t { least_conn, hash };
// What a pool's backends speak to the relay (kinds tcp/tls): the ALPN default of the tls services
// on it follows, so that a client never negotiates HTTP/2 towards an HTTP/1.1 backend.
enum class pool_protocol : uint8_t { http1, h2c, any };
enum class syn_cookie_mode : uint8_t { off, on_pressure, always };

const char* to_string(port_role r);
const char* to_string(service_kind k);
const char* to_string(forwarding_mode m);

struct port_config {
  std::string name;
  port_role role = port_role::wan;
  std::string device;  // DPDK device args: "net_af_packet0,iface=veth0", PCI address
  std::vector<l4::ip_prefix> addresses;  // local IPv4/IPv6 addresses with prefix length
  uint16_t mtu = 1500;
  std::optional<l4::ip_addr> gateway_v4, gateway_v6;  // next hops for off-link destinations
  uint16_t rx_descriptors = 1024;
  uint16_t tx_descriptors = 1024;
  // Static neighbours (next hops whose MAC is known): never learned over, never expire.
  std::vector<std::pair<l4::ip_addr, std::array<uint8_t, 6>>> neighbors;
};

struct worker_config {
  std::vector<unsigned> lcores;  // one worker per lcore
  unsigned burst = 32;
  unsigned mbufs = 8191;             // per port and worker
  unsigned idle_sleep_max_us = 200;  // adaptive back-off ceiling when idle
  // How packets reach their owning worker (docs/packet-flow.md): rss = the NIC spreads flows over
  // the workers' queues (key and indirection table set by edge); software = each worker takes
  // what its queue gets (af_packet fanout, or all on queue 0) and hands what it does not own to
  // the owner. With more than one worker, a port without RSS needs `software`.
  enum class dispatch_mode : uint8_t { rss, software } dispatch = dispatch_mode::rss;
  // flow: rte_flow rules steer replies to SNAT addresses to the queue of the worker that owns
  // their port range (edge/flow_steer.hh), so they need no hand-off; a port that refuses them
  // fails the start. off: the workers hand them over.
  enum class steering_mode : uint8_t { off, flow } snat_steering = steering_mode::off;
  std::vector<std::string> lcore_where;  // "file:line:col" of each lcore, for host checks
};

struct admin_config {
  l4::ip_addr address = *l4::ip_addr::parse("127.0.0.1");
  uint16_t port = 9180;
  // What /readyz (and edge_ready) require. started: every port's link up and every worker
  // running. pools: that, and every service has at least one healthy backend of weight > 0.
  enum class readiness_mode : uint8_t { started, pools } readiness = readiness_mode::started;
};

// Stopping (SIGTERM/SIGINT, or POST /drain): /readyz fails at once, new connections are still
// accepted for grace_ms (the BGP announcer withdraws the VIPs, routers converge), then refused;
// established ones get up to drain_timeout_ms to finish, then what is left is reset.
struct shutdown_config {
  uint32_t drain_timeout_ms = 5000;
  uint32_t grace_ms = 0;
};

struct logging_config {
  std::string level = "info";
  log_format format = log_format::text;
  std::string file;        // empty: stderr
  std::string access_log;  // one JSON line per connection: a file, "stdout", or empty (off)
};

struct backend_config {
  l4::ip_addr address;
  uint16_t port = 0;
  uint32_t weight = 1;
};

struct health_check_config {
  enum class type : uint8_t { none, tcp, http } kind = type::none;
  std::string path = "/";
  unsigned interval_ms = 1000;
  unsigned timeout_ms = 500;
  unsigned rise = 2;
  unsigned fall = 3;
  uint16_t port = 0;  // 0: each backend's own port
  // Whether the check starts with a PROXY v2 header (LOCAL); unset: as the pool's connections do
  // (proxy_protocol of a pool that a tcp/tls service uses).
  std::optional<bool> proxy_protocol;
};

struct pool_config {
  std::string name;
  std::vector<backend_config> backends;
  bool proxy_protocol = true;
  pool_protocol protocol = pool_protocol::http1;
  health_check_config health;
  // Upstream connections of kind tcp/tls services (kernel sockets through the worker's io_uring).
  balance_mode balance = balance_mode::least_conn;  // hash: rendezvous on the client tuple
  unsigned connect_timeout_ms = 1000;
  unsigned max_connect_attempts = 3;  // backends tried for one client connection (1..8)
};

struct service_config {
  std::string name;
  l4::ip_addr vip;
  uint16_t port = 0;
  uint8_t protocol = 6;  // IPPROTO_TCP or IPPROTO_UDP
  service_kind kind = service_kind::tcp;
  std::string pool;
  forwarding_mode forwarding = forwarding_mode::fnat;  // kind l4 only
  // WAF (kind tcp): a policy file (absolute, resolved against the config's directory) or an inline
  // policy mapping (validated by rules::parse_policy at load); none of them: no WAF.
  bool waf = false;
  std::string waf_policy_file;
  YAML::Node waf_policy;
  std::string waf_where;  // "file:line" of the service's waf block, for diagnostics
  // Connections the service holds at once over all workers (kinds tcp/tls); 0: no limit. Beyond
  // it a new connection is reset (relay end service_limit). Changes on reload.
  uint32_t max_connections = 0;
  // Connections one source address holds at once on this service over all workers (kinds tcp/tls);
  // 0: no limit. Beyond it a new connection is reset (relay end source_limit). Changes on reload.
  uint32_t max_connections_per_source = 0;
  // From accept to the end of the first request head (services whose WAF parses HTTP: 408 then
  // FIN) or to the first client byte (other tcp/tls services: reset); 0: none. Changes on reload.
  // The default applies to HTTP services only: on others (where the server may speak first) the
  // timer runs only when the config sets it (request_head_timeout_set).
  uint32_t request_head_timeout_ms = 10000;
  bool request_head_timeout_set = false;
  // TLS (kind tls): certificates, protocol and ticket settings of the service's context set (paths
  // resolved against the config's directory; the files are read when the appliance builds it).
  tls::server_config tls;
  std::string tls_where;  // "file:line" of the service's tls block
};

// Top-level `tls`: what every tls service shares (fixed for the life of the process).
struct tls_global_config {
  bool async = true;  // private-key operations through the offload (SSL_MODE_ASYNC)
  // In-process crypto threads (async on, no engine); 0 = auto: offload_threads_for(workers, ...).
  unsigned offload_threads = 0;
  std::string engine;          // an OpenSSL engine for private keys instead (e.g. qatengine)
  uint32_t async_jobs = 1024;  // ASYNC jobs per worker: handshakes paused in the offload at once
  uint32_t handshake_timeout_ms = 10000;  // from accept to a finished TLS handshake
};

// Top-level `waf`: the rules directory (watched), the compiled-database cache and the audit log.
struct waf_config {
  std::string rules_dir;
  std::string cache_dir;  // empty: no cache
  std::string audit_log;  // JSON lines
};

// Service kind `l4`: full-NAT source addresses and the per-worker connection tables.
struct l4_config {
  std::vector<l4::ip_addr> snat_addresses;  // answered on the lan port; replies come back to them
  uint16_t snat_port_low = 1024, snat_port_high = 65535;
  uint32_t conn_table_size = 1u << 18;  // per worker
  uint16_t gue_port = 6080;
};

// Service kind `tcp`: the per-worker userspace TCP stack and the upstream relay.
struct tcp_config {
  uint32_t max_connections = 4096;   // per worker: TCBs (incl. SYN_RECEIVED, TIME_WAIT) and relays
  uint32_t send_buffer = 65536;      // per connection, client direction
  uint32_t receive_buffer = 65536;   // per connection; bounds the advertised window
  uint32_t upstream_buffer = 65536;  // per upstream connection, each direction
  syn_cookie_mode syn_cookies = syn_cookie_mode::on_pressure;
  uint32_t syn_backlog = 256;
  uint32_t handshake_timeout_ms = 5000;
  uint32_t idle_timeout_ms = 300000;
  uint32_t fin_wait_timeout_ms = 30000;
  uint32_t time_wait_ms = 2000;
  uint32_t persist_timeout_ms = 120000;  // a zero window held this long on our data: reset
  uint32_t upstream_drain_timeout_ms = 5000;
  // Relayed connections one worker holds at once; 0: max_connections. Below max_connections it
  // keeps TCBs free for handshakes and TIME_WAIT, so that a worker at its limit still answers new
  // clients with a counted RST (relay end worker_limit). Changes on reload.
  uint32_t max_active_per_worker = 0;
  uint32_t rto_min_ms = 200;  // floor of the retransmission timeout (Linux's default)
  bool cubic = false;         // congestion_control: newreno (default) or cubic

  bool operator==(const tcp_config&) const = default;
};

struct config {
  std::string path;
  std::vector<std::string> eal_args;
  std::vector<port_config> ports;
  worker_config workers;
  admin_config admin;
  logging_config logging;
  shutdown_config shutdown;
  std::vector<pool_config> pools;
  std::vector<service_config> services;
  l4_config l4;
  tcp_config tcp;
  waf_config waf;
  tls_global_config tls;

  bool any_waf() const {
    for (const auto& s : services)
      if (s.waf) return true;
    return false;
  }
  bool any_kind(service_kind k) const {
    for (const auto& s : services)
      if (s.kind == k) return true;
    return false;
  }
  const port_config* port_with_role(port_role r) const;
  const pool_config* find_pool(const std::string& name) const;
};

// Whether this build carries the data path for a service kind. A config naming a kind that is not
// built is refused with a clear error rather than accepted and silently ignored.
bool service_kind_built(service_kind k);

// The crypto threads to start: `configured` when set; otherwise (auto) one per two workers, at
// least one, and no more than the CPUs that no worker is pinned to; one when there are none
// (crypto threads on a worker's CPU take it from the packet path, so more would not add any).
inline unsigned offload_threads_for(unsigned configured, size_t workers, size_t free_cpus) {
  if (configured != 0) return configured;
  if (free_cpus == 0) return 1;
  return static_cast<unsigned>(std::min<size_t>({(workers + 1) / 2, free_cpus, 64}));
}

common::result<config> load_config(const std::string& path);
// What the configuration asks of this host, checked by --check and before EAL starts: every
// worker lcore is a CPU this process may run on. Errors carry the key's file:line:col.
common::result<void> check_host(const config& c);
common::result<config> parse_config(const std::string& yaml_text, const std::string& path);

}  // namespace edge
