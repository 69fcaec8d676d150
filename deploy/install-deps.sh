#!/usr/bin/env bash
# Installs the Debian 12 packages edge needs to build, test and run its demo (idempotent).
set -euo pipefail
packages=(
  # build
  build-essential meson ninja-build pkg-config
  # clang + libFuzzer (fuzz stage, the clang build), clang-format (the format check)
  clang libclang-rt-14-dev clang-format
  libdpdk-dev dpdk dpdk-dev libhyperscan-dev liburing-dev libssl-dev openssl
  libspdlog-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libgtest-dev
  libcpp-httplib-dev  # edgectl's admin API client
  # e2e tests, demo and benches: namespaces, real clients and servers
  iproute2 ethtool nftables iputils-ping curl wrk hping3 python3 python3-scapy python3-yaml
  nginx-light haproxy tcpdump testssl.sh bsdextrautils
  libnginx-mod-stream  # TLS peer bench: nginx stream module (listen ... ssl, proxy_protocol)
  # WAF bench peer
  libmodsecurity-dev modsecurity-crs
  # deploy suite: BIRD (config check, announcer), Kubernetes API models for the manifest check,
  # buildah for the container image, systemd-analyze, yamllint
  bird2 python3-kubernetes buildah systemd yamllint
  # bench/run: the report's plots
  python3-matplotlib
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx is started by the tests themselves, not as a system service.
systemctl disable --now nginx >/dev/null 2>&1 || true
