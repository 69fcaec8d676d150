#include "edge/config.hh"

#include "rules/loader.hh"

#include <netinet/in.h>
#include <sched.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>
#include <string_view>

namespace edge {
namespace {

// "0000:3b:02.0" or "3b:02.0" (DPDK's PCI address forms), optionally followed by ",devargs".
bool is_pci_address(std::string_view d) {
  d = d.substr(0, d.find(','));
  auto hex = [](std::string_view s, size_t n) {
    if (s.size() != n) return false;
    for (char ch : s)
      if (!std::isxdigit(static_cast<unsigned char>(ch))) return false;
    return true;
  };
  const size_t dot = d.rfind('.');
  if (dot == std::string_view::npos || !hex(d.substr(dot + 1), 1)) return false;
  d = d.substr(0, dot);  // [DDDD:]BB:DD
  const size_t c2 = d.rfind(':');
  if (c2 == std::string_view::npos || !hex(d.substr(c2 + 1), 2)) return false;
  d = d.substr(0, c2);
  const size_t c1 = d.rfind(':');
  if (c1 == std::string_view::npos) return hex(d, 2);
  return hex(d.substr(c1 + 1), 2) && hex(d.substr(0, c1), 4);
}

// Raised inside the loader only and turned into a common::error at parse_config's boundary.
struct bad_config {
  std::string message;
  YAML::Mark mark;
};

class loader {
 public:
  explicit loader(std::string path) : path_(std::move(path)) {}

  std::string where(const YAML::Mark& m) const {
    if (m.is_null()) return path_;
    return path_ + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  }

  [[noreturn]] void fail(const YAML::Node& at, std::string msg) const {
    throw bad_config{std::move(msg), at.Mark()};
  }

  void expect_map(const YAML::Node& n, std::string_view what) const {
    if (!n.IsMap()) fail(n, std::string(what) + " must be a mapping");
  }
  void expect_seq(const YAML::Node& n, std::string_view what) const {
    if (!n.IsSequence()) fail(n, std::string(what) + " must be a list");
  }

  // Refuses keys outside `allowed` and duplicate keys: a typo must never be silently ignored.
  void check_keys(const YAML::Node& n, std::string_view what,
                  std::initializer_list<std::string_view> allowed) const {
    expect_map(n, what);
    std::set<std::string> seen;
    for (const auto& kv : n) {
      if (!kv.first.IsScalar()) fail(kv.first, "keys of " + std::string(what) + " must be scalars");
      const std::string key = kv.first.Scalar();
      bool ok = false;
      for (auto a : allowed) ok = ok || a == key;
      if (!ok) {
        std::string list;
        for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        fail(kv.first, "unknown key '" + key + "' in " + std::string(what) +
                           " (expected one of: " + list + ")");
      }
      if (!seen.insert(key).second)
        fail(kv.first, "duplicate key '" + key + "' in " + std::string(what));
    }
  }

  YAML::Node required(const YAML::Node& n, const char* key, std::string_view what) const {
    YAML::Node v = n[key];
    if (!v.IsDefined() || v.IsNull())
      fail(n, "missing required key '" + std::string(key) + "' in " + std::string(what));
    return v;
  }

  std::string str(const YAML::Node& n, std::string_view what) const {
    if (!n.IsScalar()) fail(n, std::string(what) + " must be a string");
    return n.Scalar();
  }

  uint64_t uint(const YAML::Node& n, std::string_view what, uint64_t lo, uint64_t hi) const {
    if (!n.IsScalar()) fail(n, std::string(what) + " must be an integer");
    const std::string& s = n.Scalar();
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || s.empty())
      fail(n, std::string(what) + " must be an integer, got '" + s + "'");
    if (v < lo || v > hi)
      fail(n, std::string(what) + " must be between " + std::to_string(lo) + " and " +
                  std::to_string(hi) + ", got " + s);
    return v;
  }

  // A name that reaches /config, /metrics labels and logs (port, pool, service): a charset that
  // needs no escaping anywhere and is valid UTF-8, so no label or JSON dump can break on it.
  std::string name(const YAML::Node& n, std::string_view what) const {
    const std::string s = str(n, what);
    bool ok = !s.empty() && s.size() <= 64;
    for (unsigned char ch : s)
      ok = ok && (std::isalnum(ch) || ch == '.' || ch == '_' || ch == '-') && ch < 0x80;
    if (!ok)
      fail(n, std::string(what) +
                  " must be 1 to 64 characters of A-Z a-z 0-9 . _ - (it labels metrics and "
                  "logs), got '" +
                  printable(s) + "'");
    return s;
  }

  // For messages: bytes outside printable ASCII as \xNN, at most 80 of them.
  static std::string printable(std::string_view s) {
    std::string out;
    for (unsigned char ch : s.substr(0, 80)) {
      if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
        out += static_cast<char>(ch);
      } else {
        static constexpr char hex[] = "0123456789abcdef";
        out += "\\x";
        out += hex[ch >> 4];
        out += hex[ch & 15];
      }
    }
    if (s.size() > 80) out += "...";
    return out;
  }

  bool boolean(const YAML::Node& n, std::string_view what) const {
    const std::string s = str(n, what);
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
    fail(n, std::string(what) + " must be true or false, got '" + s + "'");
  }

  l4::ip_addr addr(const YAML::Node& n, std::string_view what) const {
    auto a = l4::ip_addr::parse(str(n, what));
    if (!a) fail(n, std::string(what) + " is not an IPv4 or IPv6 address: '" + n.Scalar() + "'");
    return *a;
  }

  // 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104, and the unspecified addresses (a connect to 0.0.0.0 or
  // :: reaches loopback on Linux).
  static bool local_only(const l4::ip_addr& a) {
    if (!a.v6) return a.b[0] == 127 || (a.b[0] == 0 && a.b[1] == 0 && a.b[2] == 0 && a.b[3] == 0);
    bool zero10 = true;
    for (int i = 0; i < 10; ++i) zero10 = zero10 && a.b[i] == 0;
    if (!zero10) return false;
    if (a.b[10] == 0xff && a.b[11] == 0xff)
      return a.b[12] == 127 || (a.b[12] | a.b[13] | a.b[14] | a.b[15]) == 0;
    bool zero15 = a.b[10] == 0 && a.b[11] == 0 && a.b[12] == 0 && a.b[13] == 0 && a.b[14] == 0;
    return zero15 && a.b[15] <= 1;
  }

  l4::ip_prefix prefix(const YAML::Node& n, std::string_view what) const {
    const std::string s = str(n, what);
    auto p = l4::ip_prefix::parse(s);
    if (!p || s.find('/') == std::string::npos)
      fail(n, std::string(what) + " must be an address with a prefix length (10.0.0.1/24), got '" +
                  s + "'");
    return *p;
  }

  template <class E>
  E choice(const YAML::Node& n, std::string_view what,
           std::initializer_list<std::pair<std::string_view, E>> options) const {
    const std::string s = str(n, what);
    std::string list;
    for (const auto& [name, value] : options) {
      if (name == s) return value;
      list += (list.empty() ? "" : ", ") + std::string(name);
    }
    fail(n, std::string(what) + " must be one of " + list + ", got '" + s + "'");
  }

  config load(const YAML::Node& root) {
    config c;
    c.path = path_;
    if (!root.IsDefined() || root.IsNull()) fail(root, "the configuration is empty");
    check_keys(root, "the top level",
               {"eal", "ports", "workers", "admin", "logging", "shutdown", "l4", "tcp", "tls",
                "waf", "pools", "services"});
    if (auto e = root["eal"]) load_eal(e, c);
    load_ports(required(root, "ports", "the top level"), c);
    load_workers(required(root, "workers", "the top level"), c);
    if (auto a = root["admin"]) load_admin(a, c);
    if (auto l = root["logging"]) load_logging(l, c);
    if (auto sd = root["shutdown"]) {
      check_keys(sd, "shutdown", {"drain_timeout_ms", "grace_ms"});
      if (auto v = sd["drain_timeout_ms"])
        c.shutdown.drain_timeout_ms =
            static_cast<uint32_t>(uint(v, "shutdown.drain_timeout_ms", 0, 3600000));
      if (auto v = sd["grace_ms"])
        c.shutdown.grace_ms = static_cast<uint32_t>(uint(v, "shutdown.grace_ms", 0, 3600000));
    }
    if (auto l = root["l4"]) load_l4(l, c);
    if (auto t = root["tcp"]) load_tcp(t, c);
    if (auto w = root["waf"]) load_waf(w, c);
    if (auto t = root["tls"]) load_tls(t, c);
    if (auto p = root["pools"]) load_pools(p, c);
    if (auto s = root["services"]) load_services(s, c);
    for (auto& s : c.services) {  // private keys go the way the top-level tls section says
      s.tls.async = c.tls.async;
      s.tls.engine = c.tls.engine;
    }
    if (c.any_waf() && c.waf.rules_dir.empty())
      fail(root, "a service has a waf policy: the top-level waf.rules_dir is required");
    return c;
  }

  // A relative path is relative to the configuration file's directory, not to edged's cwd.
  std::string resolve(const std::string& p) const {
    if (p.empty() || p.front() == '/') return p;
    const auto dir = std::filesystem::path(path_).parent_path();
    return (dir.empty() ? std::filesystem::path(p) : dir / p).lexically_normal().string();
  }

  void load_waf(const YAML::Node& n, config& c) {
    check_keys(n, "waf", {"rules_dir", "cache_dir", "audit_log"});
    const auto rd = required(n, "rules_dir", "waf");
    c.waf.rules_dir = resolve(str(rd, "waf.rules_dir"));
    std::error_code ec;
    if (!std::filesystem::is_directory(c.waf.rules_dir, ec))
      fail(rd, "waf.rules_dir '" + c.waf.rules_dir + "' is not a directory");
    if (auto cd = n["cache_dir"]) c.waf.cache_dir = resolve(str(cd, "waf.cache_dir"));
    if (auto al = n["audit_log"]) c.waf.audit_log = resolve(str(al, "waf.audit_log"));
  }

  void load_service_waf(const YAML::Node& n, service_config& s, const std::string& what) {
    if (s.kind != service_kind::tcp && s.kind != service_kind::tls)
      fail(n, what + ": 'waf' applies to kinds tcp and tls only");
    check_keys(n, what + " waf", {"policy"});
    const auto p = required(n, "policy", what + " waf");
    s.waf = true;
    s.waf_where = where(p.Mark());
    if (p.IsScalar()) {
      s.waf_policy_file = resolve(p.Scalar());
      auto r = rules::load_policy_file(s.waf_policy_file);
      if (!r) fail(p, what + ": waf policy: " + r.error().str());
    } else if (p.IsMap()) {
      s.waf_policy = YAML::Clone(p);
      auto r = rules::parse_policy(p, path_);
      // Same file: the policy's own error position is more precise than the block's.
      if (!r) throw bad_config{what + ": waf policy: " + r.error().message, p.Mark()};
    } else {
      fail(p, what + ": waf.policy must be a file name or a policy mapping");
    }
  }

  // A file the appliance will read later (certificate, key, CA, ticket keys): resolved against the
  // config's directory and checked now, so that a typo is reported with its line, not at start.
  std::string existing_file(const YAML::Node& n, std::string_view what) {
    const std::string p = resolve(str(n, what));
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec))
      fail(n, std::string(what) + " '" + p + "' is not a readable file");
    return p;
  }

  void load_tls(const YAML::Node& n, config& c) {
    check_keys(n, "tls",
               {"async", "offload_threads", "engine", "async_jobs", "handshake_timeout_ms"});
    tls_global_config& t = c.tls;
    if (auto v = n["async"]) t.async = boolean(v, "tls.async");
    if (auto v = n["offload_threads"]) {
      const bool automatic = v.IsScalar() && v.Scalar() == "auto";
      if (!automatic && v.IsScalar() && !v.Scalar().empty() &&
          v.Scalar().find_first_not_of("0123456789") != std::string::npos)
        fail(v, "tls.offload_threads must be auto or an integer from 1 to 64, got '" +
                    printable(v.Scalar()) + "'");
      t.offload_threads =
          automatic ? 0 : static_cast<unsigned>(uint(v, "tls.offload_threads", 1, 64));
    }
    if (auto v = n["engine"]) t.engine = str(v, "tls.engine");
    if (auto v = n["async_jobs"])
      t.async_jobs = static_cast<uint32_t>(uint(v, "tls.async_jobs", 1, 65536));
    if (auto v = n["handshake_timeout_ms"])
      t.handshake_timeout_ms =
          static_cast<uint32_t>(uint(v, "tls.handshake_timeout_ms", 100, 600000));
    if (!t.engine.empty() && !t.async)
      fail(n["engine"], "tls.engine needs tls.async: true (engines run through ASYNC jobs)");
  }

  std::vector<std::string> string_list(const YAML::Node& n, std::string_view what) {
    expect_seq(n, what);
    std::vector<std::string> out;
    for (const auto& e : n) out.push_back(str(e, what));
    return out;
  }

  void load_service_tls(const YAML::Node& n, service_config& s, const std::string& what) {
    check_keys(n, what + " tls",
               {"certificates", "default_name", "alpn", "tls12", "ciphers", "ciphersuites",
                "groups", "tickets", "ticket_key_file", "ticket_lifetime_s", "ticket_key_grace_s",
                "tls13_tickets", "client_auth", "max_key_updates"});
    tls::server_config& t = s.tls;
    t.service = s.name;  // scopes ticket resumption to this service
    s.tls_where = where(n.Mark());
    const auto certs = required(n, "certificates", what + " tls");
    expect_seq(certs, what + " tls.certificates");
    if (certs.size() == 0)
      fail(certs, what + ": tls.certificates must list at least one certificate");
    for (const auto& cn : certs) {
      check_keys(cn, "a certificate", {"cert", "key", "names", "ocsp"});
      tls::cert_config cc;
      cc.cert_file = existing_file(required(cn, "cert", "a certificate"), "certificate file");
      cc.key_file = existing_file(required(cn, "key", "a certificate"), "key file");
      if (auto v = cn["names"]) cc.names = string_list(v, "certificate names");
      if (auto v = cn["ocsp"]) cc.ocsp_file = existing_file(v, "OCSP response file");
      t.certs.push_back(std::move(cc));
    }
    if (auto v = n["default_name"]) t.default_name = str(v, "tls.default_name");
    if (auto v = n["alpn"]) {
      t.alpn = string_list(v, "tls.alpn");
      for (size_t i = 0; i < t.alpn.size(); ++i)
        if (t.alpn[i].empty() || t.alpn[i].size() > 255)
          fail(v[i], "an ALPN protocol name is 1 to 255 bytes");
    }
    if (auto v = n["tls12"]) t.allow_tls12 = boolean(v, "tls.tls12");
    if (auto v = n["ciphers"]) t.tls12_ciphers = str(v, "tls.ciphers");
    if (auto v = n["ciphersuites"]) t.tls13_ciphersuites = str(v, "tls.ciphersuites");
    if (auto v = n["groups"]) t.groups = str(v, "tls.groups");
    if (auto v = n["tickets"]) t.tickets = boolean(v, "tls.tickets");
    if (auto v = n["ticket_key_file"]) t.ticket_key_file = existing_file(v, "ticket key file");
    if (auto v = n["ticket_lifetime_s"])
      t.ticket_lifetime = std::chrono::seconds(uint(v, "tls.ticket_lifetime_s", 60, 604800));
    if (auto v = n["ticket_key_grace_s"])
      t.ticket_key_grace = std::chrono::seconds(uint(v, "tls.ticket_key_grace_s", 0, 604800));
    if (auto v = n["tls13_tickets"])
      t.tls13_tickets = static_cast<int>(uint(v, "tls.tls13_tickets", 0, 8));
    if (auto v = n["max_key_updates"])
      t.max_key_updates = static_cast<uint32_t>(uint(v, "tls.max_key_updates", 0, 1u << 20));
    if (auto ca = n["client_auth"]) {
      check_keys(ca, what + " tls.client_auth", {"ca", "verify_depth", "required"});
      t.client_auth.enabled = true;
      t.client_auth.ca_file =
          existing_file(required(ca, "ca", what + " tls.client_auth"), "client CA file");
      if (auto v = ca["verify_depth"])
        t.client_auth.verify_depth = static_cast<int>(uint(v, "verify_depth", 1, 16));
      if (auto v = ca["required"]) t.client_auth.required = boolean(v, "client_auth.required");
    }
  }

 private:
  void load_eal(const YAML::Node& n, config& c) {
    check_keys(n, "eal", {"args"});
    if (auto args = n["args"]) {
      expect_seq(args, "eal.args");
      for (const auto& a : args) {
        std::string s = str(a, "an EAL argument");
        // Lcores and devices come from `workers` and `ports`; two sources of truth would drift.
        for (std::string_view banned : {"-l", "--lcores", "-c", "--vdev", "-a", "--allow"})
          if (s == banned || s.starts_with(std::string(banned) + "="))
            fail(a, "EAL argument '" + s +
                        "' is set from workers.lcores / ports; remove it from eal.args");
        c.eal_args.push_back(std::move(s));
      }
    }
  }

  void load_ports(const YAML::Node& n, config& c) {
    expect_seq(n, "ports");
    if (n.size() == 0) fail(n, "ports must list at least one port");
    std::set<std::string> names, devices;
    for (const auto& pn : n) {
      check_keys(pn, "a port",
                 {"name", "role", "device", "addresses", "gateways", "mtu", "rx_descriptors",
                  "tx_descriptors", "neighbors"});
      port_config p;
      const auto name = required(pn, "name", "a port");
      p.name = this->name(name, "port name");
      if (!names.insert(p.name).second) fail(name, "duplicate port name '" + p.name + "'");
      p.role = choice<port_role>(required(pn, "role", "port '" + p.name + "'"), "port role",
                                 {{"wan", port_role::wan}, {"lan", port_role::lan}});
      const auto dev = required(pn, "device", "port '" + p.name + "'");
      p.device = str(dev, "port device");
      if (!devices.insert(p.device).second)
        fail(dev, "device '" + p.device + "' is used by two ports");
      // A PCI device with --no-pci would fail in EAL at start: say so here, with the line.
      if (is_pci_address(p.device))
        for (const auto& a : c.eal_args)
          if (a == "--no-pci")
            fail(dev, "port '" + p.name + "' is the PCI device " + p.device +
                          ", but eal.args has --no-pci (remove it, or use a net_* virtual device)");
      if (auto a = pn["addresses"]) {
        expect_seq(a, "port addresses");
        for (const auto& an : a) p.addresses.push_back(prefix(an, "port address"));
      }
      if (auto g = pn["gateways"]) {
        expect_seq(g, "port gateways");
        for (const auto& gn : g) {
          const l4::ip_addr a = addr(gn, "port gateway");
          auto& slot = a.v6 ? p.gateway_v6 : p.gateway_v4;
          if (slot)
            fail(gn, "port '" + p.name + "' has two " + (a.v6 ? "IPv6" : "IPv4") + " gateways");
          slot = a;
        }
      }
      if (auto nb = pn["neighbors"]) {
        expect_seq(nb, "port neighbors");
        for (const auto& e : nb) {
          check_keys(e, "a neighbor", {"address", "mac"});
          const l4::ip_addr a = addr(required(e, "address", "a neighbor"), "neighbor address");
          const auto mn = required(e, "mac", "a neighbor");
          const std::string ms = str(mn, "neighbor mac");
          std::array<uint8_t, 6> mac{};
          unsigned v[6];
          char tail;
          if (ms.size() != 17 || std::sscanf(ms.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1],
                                             &v[2], &v[3], &v[4], &v[5], &tail) != 6)
            fail(mn, "neighbor mac must be six hex bytes like 02:00:00:00:00:01, got '" + ms + "'");
          for (int k = 0; k < 6; ++k) mac[k] = static_cast<uint8_t>(v[k]);
          if ((mac[0] & 1) != 0 || mac == std::array<uint8_t, 6>{})
            fail(mn, "neighbor mac " + ms + " is multicast or zero");
          p.neighbors.emplace_back(a, mac);
        }
      }
      if (auto m = pn["mtu"]) p.mtu = static_cast<uint16_t>(uint(m, "port mtu", 576, 9000));
      if (auto r = pn["rx_descriptors"])
        p.rx_descriptors = static_cast<uint16_t>(uint(r, "rx_descriptors", 64, 16384));
      if (auto t = pn["tx_descriptors"])
        p.tx_descriptors = static_cast<uint16_t>(uint(t, "tx_descriptors", 64, 16384));
      c.ports.push_back(std::move(p));
    }
    bool wan = false;
    for (const auto& p : c.ports) wan = wan || p.role == port_role::wan;
    if (!wan) fail(n, "at least one port must have role 'wan'");
  }

  void load_workers(const YAML::Node& n, config& c) {
    check_keys(n, "workers",
               {"lcores", "burst", "mbufs", "idle_sleep_max_us", "dispatch", "snat_steering"});
    const auto lc = required(n, "lcores", "workers");
    // auto: the CPUs this process may run on (a Kubernetes pod's exclusive CPU set under the
    // static CPU manager policy, or a systemd CPUAffinity=), less the lowest, which is left to the
    // control thread; all of them when there is one.
    if (lc.IsScalar() && lc.Scalar() == "auto") {
      cpu_set_t set;
      if (sched_getaffinity(0, sizeof set, &set) != 0)
        fail(lc, "workers.lcores: auto: cannot read the CPU set");
      for (unsigned cpu = 0; cpu < CPU_SETSIZE && cpu < 1024; ++cpu)
        if (CPU_ISSET(cpu, &set)) c.workers.lcores.push_back(cpu);
      if (c.workers.lcores.size() > 1) c.workers.lcores.erase(c.workers.lcores.begin());
      c.workers.lcore_where.assign(c.workers.lcores.size(), where(lc.Mark()));
    } else {
      expect_seq(lc, "workers.lcores");
      if (lc.size() == 0) fail(lc, "workers.lcores must list at least one lcore");
      std::set<unsigned> seen;
      for (const auto& l : lc) {
        const auto v = static_cast<unsigned>(uint(l, "an lcore id", 0, 1023));
        if (!seen.insert(v).second) fail(l, "lcore " + std::to_string(v) + " is listed twice");
        c.workers.lcores.push_back(v);
        c.workers.lcore_where.push_back(where(l.Mark()));
      }
    }
    if (auto b = n["burst"])
      c.workers.burst = static_cast<unsigned>(uint(b, "workers.burst", 1, 256));
    if (auto m = n["mbufs"])
      c.workers.mbufs = static_cast<unsigned>(uint(m, "workers.mbufs", 1023, 1u << 22));
    if (auto s = n["idle_sleep_max_us"])
      c.workers.idle_sleep_max_us =
          static_cast<unsigned>(uint(s, "workers.idle_sleep_max_us", 0, 100000));
    if (auto d = n["dispatch"])
      c.workers.dispatch = choice<worker_config::dispatch_mode>(
          d, "workers.dispatch",
          {{"rss", worker_config::dispatch_mode::rss},
           {"software", worker_config::dispatch_mode::software}});
    if (auto d = n["snat_steering"])
      c.workers.snat_steering =
          choice<worker_config::steering_mode>(d, "workers.snat_steering",
                                               {{"off", worker_config::steering_mode::off},
                                                {"flow", worker_config::steering_mode::flow}});
  }

  void load_admin(const YAML::Node& n, config& c) {
    check_keys(n, "admin", {"listen", "readiness"});
    if (auto r = n["readiness"])
      c.admin.readiness =
          choice<admin_config::readiness_mode>(r, "admin.readiness",
                                               {{"started", admin_config::readiness_mode::started},
                                                {"pools", admin_config::readiness_mode::pools}});
    if (auto l = n["listen"]) {
      // "127.0.0.1:9180" or "[::1]:9180"
      const std::string s = str(l, "admin.listen");
      const auto colon = s.rfind(':');
      std::string host = colon == std::string::npos ? s : s.substr(0, colon);
      if (host.size() > 1 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      auto a = l4::ip_addr::parse(host);
      uint16_t port = 0;
      const std::string ps = colon == std::string::npos ? "" : s.substr(colon + 1);
      auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
      if (!a || ec != std::errc{} || p != ps.data() + ps.size() || port == 0)
        fail(l, "admin.listen must be ADDRESS:PORT (127.0.0.1:9180), got '" + s + "'");
      const bool loopback = a->v6 ? *a == *l4::ip_addr::parse("::1") : a->b[0] == 127;
      if (!loopback)
        fail(l, "admin.listen must be a loopback address: the admin API has no authentication");
      c.admin.address = *a;
      c.admin.port = port;
    }
  }

  void load_logging(const YAML::Node& n, config& c) {
    check_keys(n, "logging", {"level", "format", "file", "access_log"});
    if (auto a = n["access_log"]) c.logging.access_log = str(a, "logging.access_log");
    if (auto l = n["level"]) {
      c.logging.level = str(l, "logging.level");
      choice<int>(l, "logging.level",
                  {{"trace", 0}, {"debug", 1}, {"info", 2}, {"warn", 3}, {"error", 4}});
    }
    if (auto f = n["format"])
      c.logging.format = choice<log_format>(
          f, "logging.format", {{"text", log_format::text}, {"json", log_format::json}});
    if (auto f = n["file"]) c.logging.file = str(f, "logging.file");
  }

  void load_l4(const YAML::Node& n, config& c) {
    check_keys(
        n, "l4",
        {"snat_addresses", "snat_port_low", "snat_port_high", "conn_table_size", "gue_port"});
    if (auto s = n["snat_addresses"]) {
      expect_seq(s, "l4.snat_addresses");
      for (const auto& a : s) c.l4.snat_addresses.push_back(addr(a, "a SNAT address"));
    }
    if (auto v = n["snat_port_low"])
      c.l4.snat_port_low = static_cast<uint16_t>(uint(v, "l4.snat_port_low", 1024, 65535));
    if (auto v = n["snat_port_high"])
      c.l4.snat_port_high = static_cast<uint16_t>(uint(v, "l4.snat_port_high", 1024, 65535));
    if (c.l4.snat_port_high < c.l4.snat_port_low)
      fail(n, "l4.snat_port_high is below l4.snat_port_low");
    if (auto v = n["conn_table_size"])
      c.l4.conn_table_size = static_cast<uint32_t>(uint(v, "l4.conn_table_size", 64, 1u << 26));
    if (auto v = n["gue_port"])
      c.l4.gue_port = static_cast<uint16_t>(uint(v, "l4.gue_port", 1, 65535));
  }

  void load_tcp(const YAML::Node& n, config& c) {
    check_keys(n, "tcp",
               {"max_connections", "send_buffer", "receive_buffer", "upstream_buffer",
                "syn_cookies", "syn_backlog", "handshake_timeout_ms", "idle_timeout_ms",
                "fin_wait_timeout_ms", "time_wait_ms", "upstream_drain_timeout_ms",
                "max_active_per_worker", "rto_min_ms", "congestion_control", "persist_timeout_ms"});
    tcp_config& t = c.tcp;
    auto u32 = [&](const char* key, uint32_t& out, uint64_t lo, uint64_t hi) {
      if (auto v = n[key]) out = static_cast<uint32_t>(uint(v, std::string("tcp.") + key, lo, hi));
    };
    u32("max_connections", t.max_connections, 16, 1u << 20);
    u32("send_buffer", t.send_buffer, 4096, 16u << 20);
    u32("receive_buffer", t.receive_buffer, 4096, 16u << 20);
    u32("upstream_buffer", t.upstream_buffer, 4096, 16u << 20);
    u32("syn_backlog", t.syn_backlog, 1, 1u << 20);
    u32("handshake_timeout_ms", t.handshake_timeout_ms, 100, 600000);
    u32("idle_timeout_ms", t.idle_timeout_ms, 100, 86400000);
    u32("fin_wait_timeout_ms", t.fin_wait_timeout_ms, 100, 3600000);
    u32("time_wait_ms", t.time_wait_ms, 0, 240000);
    u32("persist_timeout_ms", t.persist_timeout_ms, 1000, 86400000);
    u32("upstream_drain_timeout_ms", t.upstream_drain_timeout_ms, 10, 600000);
    u32("rto_min_ms", t.rto_min_ms, 1, 60000);
    if (auto v = n["congestion_control"])
      t.cubic = choice<bool>(v, "tcp.congestion_control", {{"newreno", false}, {"cubic", true}});
    if (auto v = n["syn_cookies"])
      t.syn_cookies = choice<syn_cookie_mode>(v, "tcp.syn_cookies",
                                              {{"off", syn_cookie_mode::off},
                                               {"on_pressure", syn_cookie_mode::on_pressure},
                                               {"always", syn_cookie_mode::always}});
    if (t.syn_backlog > t.max_connections)  // the default backlog too: point at tcp then
      fail(n["syn_backlog"].IsDefined() ? n["syn_backlog"] : n,
           "tcp.syn_backlog must not exceed tcp.max_connections");
    if (auto v = n["max_active_per_worker"]) {
      t.max_active_per_worker =
          static_cast<uint32_t>(uint(v, "tcp.max_active_per_worker", 1, 1u << 20));
      if (t.max_active_per_worker > t.max_connections)
        fail(v,
             "tcp.max_active_per_worker must not exceed tcp.max_connections (the per-worker pool)");
    }
  }

  void load_pools(const YAML::Node& n, config& c) {
    expect_seq(n, "pools");
    std::set<std::string> names;
    for (const auto& pn : n) {
      check_keys(pn, "a pool",
                 {"name", "backends", "proxy_protocol", "protocol", "health_check", "balance",
                  "connect_timeout_ms", "max_connect_attempts"});
      pool_config p;
      const auto name = required(pn, "name", "a pool");
      p.name = this->name(name, "pool name");
      if (!names.insert(p.name).second) fail(name, "duplicate pool name '" + p.name + "'");
      const auto bs = required(pn, "backends", "pool '" + p.name + "'");
      expect_seq(bs, "pool backends");
      if (bs.size() == 0) fail(bs, "pool '" + p.name + "' has no backends");
      std::set<std::pair<l4::ip_addr, uint16_t>> seen;
      for (const auto& bn : bs) {
        check_keys(bn, "a backend", {"address", "port", "weight"});
        backend_config b;
        const auto an = required(bn, "address", "a backend");
        b.address = addr(an, "backend address");
        // A backend on this host would hand the data plane edged's own admin API (no
        // authentication) and whatever else listens on loopback: an SSRF built into the config.
        if (local_only(b.address) || b.address == c.admin.address)
          fail(
              an,
              "backend address " + b.address.str() +
                  " is a loopback, unspecified or the admin address: it would expose the admin API "
                  "to the data plane");
        b.port = static_cast<uint16_t>(
            uint(required(bn, "port", "a backend"), "backend port", 1, 65535));
        if (auto w = bn["weight"])
          b.weight = static_cast<uint32_t>(uint(w, "backend weight", 0, 1000));
        if (!seen.insert({b.address, b.port}).second)
          fail(bn, "backend " + b.address.str() + ":" + std::to_string(b.port) +
                       " is listed twice in pool '" + p.name + "'");
        p.backends.push_back(b);
      }
      if (auto pp = pn["proxy_protocol"]) p.proxy_protocol = boolean(pp, "proxy_protocol");
      if (auto hc = pn["health_check"]) load_health(hc, p.health);
      if (auto v = pn["protocol"])
        p.protocol = choice<pool_protocol>(v, "pool protocol",
                                           {{"http1", pool_protocol::http1},
                                            {"h2c", pool_protocol::h2c},
                                            {"any", pool_protocol::any}});
      if (auto b = pn["balance"])
        p.balance = choice<balance_mode>(
            b, "pool balance",
            {{"least_conn", balance_mode::least_conn}, {"hash", balance_mode::hash}});
      if (auto v = pn["connect_timeout_ms"])
        p.connect_timeout_ms = static_cast<unsigned>(uint(v, "connect_timeout_ms", 10, 60000));
      if (auto v = pn["max_connect_attempts"])
        p.max_connect_attempts = static_cast<unsigned>(uint(v, "max_connect_attempts", 1, 8));
      c.pools.push_back(std::move(p));
    }
  }

  void load_health(const YAML::Node& n, health_check_config& h) {
    check_keys(
        n, "health_check",
        {"type", "path", "interval_ms", "timeout_ms", "rise", "fall", "port", "proxy_protocol"});
    h.kind = choice<health_check_config::type>(
        required(n, "type", "health_check"), "health_check.type",
        {{"tcp", health_check_config::type::tcp}, {"http", health_check_config::type::http}});
    if (auto p = n["path"]) {
      h.path = str(p, "health_check.path");
      if (h.path.empty() || h.path[0] != '/') fail(p, "health_check.path must start with '/'");
    }
    if (auto v = n["interval_ms"])
      h.interval_ms = static_cast<unsigned>(uint(v, "interval_ms", 50, 3600000));
    if (auto v = n["timeout_ms"])
      h.timeout_ms = static_cast<unsigned>(uint(v, "timeout_ms", 10, 60000));
    if (auto v = n["rise"]) h.rise = static_cast<unsigned>(uint(v, "rise", 1, 100));
    if (auto v = n["fall"]) h.fall = static_cast<unsigned>(uint(v, "fall", 1, 100));
    if (auto v = n["port"]) h.port = static_cast<uint16_t>(uint(v, "health_check.port", 1, 65535));
    if (auto v = n["proxy_protocol"]) h.proxy_protocol = boolean(v, "health_check.proxy_protocol");
    if (h.timeout_ms >= h.interval_ms) fail(n, "health_check.timeout_ms must be below interval_ms");
  }

  // ALPN follows what the pool's backends speak: by default http/1.1 for an http1 pool, h2 for
  // h2c, both for any (http/1.1 only under a WAF); an explicit list may not offer a protocol
  // the backends do not speak.
  void check_alpn(const YAML::Node& sn, service_config& s, const pool_config& p,
                  const std::string& what) {
    const auto alpn = sn["tls"]["alpn"];
    if (s.waf && p.protocol == pool_protocol::h2c)
      fail(sn["pool"], what + ": the WAF passes HTTP/1.x only, but pool '" + p.name +
                           "' speaks h2c only (protocol: h2c); use protocol: any or http1");
    if (!alpn) {
      if (!s.waf)
        s.tls.alpn = p.protocol == pool_protocol::http1 ? std::vector<std::string>{"http/1.1"}
                     : p.protocol == pool_protocol::h2c
                         ? std::vector<std::string>{"h2"}
                         : std::vector<std::string>{"h2", "http/1.1"};
      return;
    }
    for (size_t i = 0; i < s.tls.alpn.size(); ++i) {
      const std::string& a = s.tls.alpn[i];
      if (a == "h2" && p.protocol == pool_protocol::http1)
        fail(alpn[i],
             what + ": tls.alpn offers 'h2', but pool '" + p.name +
                 "' speaks HTTP/1.1 (protocol: http1, the default): clients would speak HTTP/2 to "
                 "it; "
                 "set the pool's protocol to h2c or any if its backends speak HTTP/2 in cleartext");
      if (a == "http/1.1" && p.protocol == pool_protocol::h2c)
        fail(alpn[i], what + ": tls.alpn offers 'http/1.1', but pool '" + p.name +
                          "' speaks only HTTP/2 (protocol: h2c); set the pool's protocol to any if "
                          "its backends speak both");
    }
  }

  void load_services(const YAML::Node& n, config& c) {
    expect_seq(n, "services");
    std::set<std::string> names;
    std::set<std::tuple<l4::ip_addr, uint16_t, uint8_t>> vips;
    for (const auto& sn : n) {
      check_keys(sn, "a service",
                 {"name", "vip", "port", "protocol", "kind", "pool", "forwarding", "waf", "tls",
                  "max_connections", "max_connections_per_source", "timeouts"});
      service_config s;
      const auto name = required(sn, "name", "a service");
      s.name = this->name(name, "service name");
      if (!names.insert(s.name).second) fail(name, "duplicate service name '" + s.name + "'");
      const std::string what = "service '" + s.name + "'";
      s.vip = addr(required(sn, "vip", what), "service vip");
      s.port = static_cast<uint16_t>(uint(required(sn, "port", what), "service port", 1, 65535));
      if (auto p = sn["protocol"])
        s.protocol =
            choice<uint8_t>(p, "service protocol", {{"tcp", IPPROTO_TCP}, {"udp", IPPROTO_UDP}});
      const auto kind = required(sn, "kind", what);
#define EDGE_CHOICE(id, text) {text, service_kind::id},
      s.kind = choice<service_kind>(kind, "service kind", {EDGE_SERVICE_KINDS(EDGE_CHOICE)});
#undef EDGE_CHOICE
      if (s.kind != service_kind::l4 && s.protocol != IPPROTO_TCP)
        fail(sn, what + ": kind '" + to_string(s.kind) + "' needs protocol tcp");
      const auto pool = required(sn, "pool", what);
      s.pool = str(pool, "service pool");
      if (c.find_pool(s.pool) == nullptr)
        fail(pool, what + " refers to pool '" + s.pool + "', which is not defined");
      if (auto f = sn["forwarding"]) {
        if (s.kind != service_kind::l4) fail(f, what + ": 'forwarding' applies to kind l4 only");
#define EDGE_CHOICE(id, text) {text, forwarding_mode::id},
        s.forwarding =
            choice<forwarding_mode>(f, "service forwarding", {EDGE_FORWARDING_MODES(EDGE_CHOICE)});
#undef EDGE_CHOICE
      }
      if (s.kind == service_kind::l4) {
        for (const auto& b : c.find_pool(s.pool)->backends)
          if (b.address.v6 != s.vip.v6)
            fail(pool, what + ": backend " + b.address.str() + " of pool '" + s.pool +
                           "' is not of the VIP's address family (no 4-to-6 translation)");
        if (c.port_with_role(port_role::lan) == nullptr)
          fail(sn, what + ": kind l4 needs a port with role 'lan' towards the backends");
        bool snat = false;
        for (const auto& a : c.l4.snat_addresses) snat = snat || a.v6 == s.vip.v6;
        if (s.forwarding == forwarding_mode::fnat && !snat)
          fail(sn, what + ": full NAT needs an " + (s.vip.v6 ? "IPv6" : "IPv4") +
                       " address in l4.snat_addresses");
      }
      if (auto w = sn["waf"]) load_service_waf(w, s, what);
      if (auto t = sn["tls"]) {
        if (s.kind != service_kind::tls) fail(t, what + ": 'tls' applies to kind tls only");
        load_service_tls(t, s, what);
      } else if (s.kind == service_kind::tls) {
        fail(sn, what + ": kind tls needs a 'tls' block with at least one certificate");
      }
      // The WAF parses HTTP/1.x: a WAF'd tls service offers only http/1.1 (by default), never h2.
      if (s.kind == service_kind::tls && s.waf) {
        const auto alpn = sn["tls"]["alpn"];
        if (!alpn) s.tls.alpn = {"http/1.1"};
        for (size_t i = 0; i < s.tls.alpn.size(); ++i)
          if (s.tls.alpn[i] != "http/1.1")
            fail(alpn[i],
                 what +
                     ": the WAF inspects HTTP/1.x only; tls.alpn may offer only http/1.1 on a "
                     "service with a waf policy, not '" +
                     s.tls.alpn[i] + "'");
      }
      if (s.kind == service_kind::tls) check_alpn(sn, s, *c.find_pool(s.pool), what);
      if (auto m = sn["max_connections"]) {
        if (s.kind == service_kind::l4)
          fail(m, what + ": 'max_connections' applies to the terminating kinds (tcp, tls)");
        s.max_connections = static_cast<uint32_t>(uint(m, "service max_connections", 1, 1u << 24));
      }
      if (auto m = sn["max_connections_per_source"]) {
        if (s.kind == service_kind::l4)
          fail(m,
               what + ": 'max_connections_per_source' applies to the terminating kinds (tcp, tls)");
        s.max_connections_per_source =
            static_cast<uint32_t>(uint(m, "service max_connections_per_source", 1, 65535));
      }
      if (auto t = sn["timeouts"]) {
        if (s.kind == service_kind::l4)
          fail(t, what + ": 'timeouts' applies to the terminating kinds (tcp, tls)");
        check_keys(t, "service timeouts", {"request_head_ms"});
        if (auto v = t["request_head_ms"]) {
          s.request_head_timeout_ms =
              static_cast<uint32_t>(uint(v, "service timeouts.request_head_ms", 0, 3600000));
          s.request_head_timeout_set = true;
        }
      }
      if (!vips.insert({s.vip, s.port, s.protocol}).second)
        fail(sn, what + ": VIP " + s.vip.str() + " port " + std::to_string(s.port) +
                     " is already used by another service");
      c.services.push_back(std::move(s));
    }
    // After the structural checks, so that those errors come first whatever the build.
    size_t i = 0;
    for (const auto& sn : n) {
      const service_config& s = c.services[i++];
      if (!service_kind_built(s.kind))
        fail(sn["kind"], "service '" + s.name + "': service kind '" + to_string(s.kind) +
                             "' is not available in this build of edged yet");
    }
  }

  std::string path_;
};

}  // namespace

const char* to_string(port_role r) {
  return r == port_role::wan ? "wan" : "lan";
}

const char* to_string(service_kind k) {
  static constexpr const char* texts[] = {EDGE_SERVICE_KINDS(COMMON_ENUM_TEXT)};
  return common::enum_text(k, texts);
}

bool service_kind_built(service_kind k) {
  // Flipped on as each kind's data path lands (issues: L4 balancing, userspace TCP, TLS).
  switch (k) {
    case service_kind::l4:
      return true;
    case service_kind::tcp:
      return true;
    case service_kind::tls:
      return true;
  }
  return false;
}

const char* to_string(forwarding_mode m) {
  static constexpr const char* texts[] = {EDGE_FORWARDING_MODES(COMMON_ENUM_TEXT)};
  return common::enum_text(m, texts);
}

const port_config* config::port_with_role(port_role r) const {
  for (const auto& p : ports)
    if (p.role == r) return &p;
  return nullptr;
}

const pool_config* config::find_pool(const std::string& name) const {
  for (const auto& p : pools)
    if (p.name == name) return &p;
  return nullptr;
}

common::result<config> parse_config(const std::string& yaml_text, const std::string& path) {
  loader l(path);
  try {
    return l.load(YAML::Load(yaml_text));
  } catch (const bad_config& e) {
    return common::fail(e.message, l.where(e.mark));
  } catch (const YAML::Exception& e) {
    return common::fail("YAML syntax error: " + e.msg, l.where(e.mark));
  }
}

common::result<void> check_host(const config& c) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return {};  // nothing known: EAL decides
  std::string cpus;
  for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &allowed)) cpus += (cpus.empty() ? "" : ",") + std::to_string(cpu);
  for (size_t i = 0; i < c.workers.lcores.size(); ++i) {
    const unsigned l = c.workers.lcores[i];
    if (l >= CPU_SETSIZE || !CPU_ISSET(l, &allowed))
      return common::fail("lcore " + std::to_string(l) +
                              " is not a CPU this process may run on (CPUs " + cpus + ")",
                          i < c.workers.lcore_where.size() ? c.workers.lcore_where[i] : c.path);
  }
  return {};
}

common::result<config> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return common::fail("cannot open configuration file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path);
}

}  // namespace edge
