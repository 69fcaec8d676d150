#!/bin/sh
# Interop check against the Linux TCP stack (needs root): a client namespace on a veth whose peer
# end is a DPDK net_af_packet port driven by interop_echo. Usage:
#   tests/unit/l4/tcp/interop.sh <build dir> [bytes] [connections] [loss percent]
set -eu
B=${1:?build dir}; SIZE=${2:-1000000}; CONNS=${3:-3}; LOSS=${4:-0}
NS=tcpinterop$$
cleanup() { ip netns del $NS 2>/dev/null || true; ip link del tiv$$ 2>/dev/null || true; }
trap cleanup EXIT
ip netns add $NS
ip link add tiv$$ type veth peer name tic$$
ip link set tic$$ netns $NS
ip link set tiv$$ up
ip -n $NS addr add 10.77.0.2/24 dev tic$$
ip -n $NS link set tic$$ up
ip -n $NS link set lo up
# No offloads on the client side: the DPDK port sees real, checksummed, MTU-sized frames.
ip netns exec $NS ethtool -K tic$$ tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
ethtool -K tiv$$ gro off rx off tx off >/dev/null 2>&1 || true
if [ "$LOSS" != 0 ]; then
  ip netns exec $NS nft add table inet loss
  # LOSS_DIR: both (default), out (client -> stack only) or in (stack -> client only).
  if [ "${LOSS_DIR:-both}" != in ]; then
    ip netns exec $NS nft add chain inet loss out '{ type filter hook output priority 0; }'
    ip netns exec $NS nft add rule inet loss out ip daddr 10.77.0.1 numgen random mod 100 '<' $LOSS drop
  fi
  if [ "${LOSS_DIR:-both}" != out ]; then
    ip netns exec $NS nft add chain inet loss in '{ type filter hook input priority 0; }'
    ip netns exec $NS nft add rule inet loss in ip saddr 10.77.0.1 numgen random mod 100 '<' $LOSS drop
  fi
fi
$B/tests/unit/l4/tcp/tcp_interop_echo --no-huge --no-pci --no-shconf --no-telemetry -m 512 -l 0 \
  --vdev=net_af_packet0,iface=tiv$$ --log-level=lib.eal:warning -- 10.77.0.1 8080 ${SECONDS_UP:-60} &
PID=$!
if [ -n "${PCAP:-}" ]; then ip netns exec $NS tcpdump -i tic$$ -w "$PCAP" -s 96 >/dev/null 2>&1 & TPID=$!; fi
sleep 2
set +e
ip netns exec $NS /usr/bin/python3 "$(dirname "$0")/interop_client.py" 10.77.0.1 8080 "$SIZE" "$CONNS"
RC=$?
kill -INT $PID 2>/dev/null; wait $PID
[ -n "${TPID:-}" ] && kill $TPID 2>/dev/null
exit $RC
