#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_l4_forward (run with /usr/bin/python3: needs scapy).
Input format (l4_forward.cc): [config byte] then frames [tick delta, len16, bytes]."""
import os
import struct

from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6, ICMPv6PacketTooBig, Raw, raw

HERE = os.path.dirname(os.path.abspath(__file__))
WAN = dict(src='02:aa:00:00:00:01', dst='02:00:00:00:00:01')  # from the router to our wan port
LAN = dict(src='02:bb:00:00:00:05', dst='02:00:00:00:00:02')  # from backend .5 to our lan port


def frames(cfg, *fs, tick=1):
    out = bytes([cfg])
    for f in fs:
        b = raw(f)
        out += bytes([tick]) + struct.pack('>H', len(b)) + b
    return out


def c4(vip, proto='tcp', flags='S', payload=b'', opts=(('MSS', 1460),), df=False):
    l4 = TCP(sport=40000, dport=80, flags=flags, seq=1000, options=list(opts)) if proto == 'tcp' \
        else UDP(sport=40000, dport=53)
    return Ether(**WAN) / IP(src='203.0.113.7', dst=vip, flags='DF' if df else 0) / l4 / Raw(payload)


def c6(vip, proto='tcp', flags='S', payload=b'', opts=(('MSS', 1440),)):
    l4 = TCP(sport=40000, dport=80, flags=flags, seq=1000, options=list(opts)) if proto == 'tcp' \
        else UDP(sport=40000, dport=53)
    return Ether(**WAN) / IPv6(src='2001:db8:9::7', dst=vip) / l4 / Raw(payload)


seeds = {
    'fnat_v4_tcp_conversation': frames(0, c4('198.51.100.1'),
        Ether(**LAN) / IP(src='10.0.1.5', dst='10.0.0.100') / TCP(sport=8080, dport=1024, flags='SA', ack=1001),
        c4('198.51.100.1', flags='A', payload=b'hello'), c4('198.51.100.1', flags='F')),
    'fnat_v4_udp': frames(0, c4('198.51.100.1', 'udp', payload=b'query'),
        Ether(**LAN) / IP(src='10.0.1.5', dst='10.0.0.100') / UDP(sport=5353, dport=1024) / Raw(b'answer')),
    'fnat_v6_tcp': frames(0, c6('2001:db8:100::1'), c6('2001:db8:100::1', flags='A', payload=b'x' * 100)),
    'ipip_v4_big_df': frames(1, c4('198.51.100.2', flags='A', payload=b'y' * 1400, df=True)),
    'ipip_v6_mss_clamp': frames(1, c6('2001:db8:100::2', opts=(('MSS', 1460), ('WScale', 7)))),
    'gue_v4_unresolved': frames(0, c4('198.51.100.3'), c4('198.51.100.3', flags='A', payload=b'z' * 300)),
    'gue_v6_udp': frames(0, c6('2001:db8:100::3', 'udp', payload=b'q' * 40)),
    'client_option_v4': frames(0, c4('198.51.100.4', opts=(('MSS', 1460), ('SAckOK', b''), ('Timestamp', (1, 0))))),
    'client_option_v6': frames(0, c6('2001:db8:100::4')),
    'icmp_frag_needed_to_vip': frames(0, c4('198.51.100.1'),
        Ether(**WAN) / IP(src='192.0.2.9', dst='198.51.100.1') / ICMP(type=3, code=4, nexthopmtu=1200)
        / IP(src='198.51.100.1', dst='203.0.113.7') / TCP(sport=80, dport=40000, flags='SA')),
    'icmp6_too_big_to_vip': frames(0, c6('2001:db8:100::1'),
        Ether(**WAN) / IPv6(src='2001:db8::9', dst='2001:db8:100::1') / ICMPv6PacketTooBig(mtu=1280)
        / IPv6(src='2001:db8:100::1', dst='2001:db8:9::7') / TCP(sport=80, dport=40000, flags='SA')),
    'expiry': frames(0, c4('198.51.100.1', 'udp'), c4('198.51.100.1', 'udp'), tick=0xff),
}
os.makedirs(os.path.join(HERE, 'corpus'), exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(HERE, 'corpus', name), 'wb') as f:
        f.write(data)
print(f'wrote {len(seeds)} seeds')
