#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_tcp_input. Op format: see tcp_input.cc (op, client, args)."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

def syn(c, sel=0x7f): return [0, c, 0, sel]
def seg(c, flags, dseq=0, dack=0, win=0xffff, sel=1, plen=0):
    return [1, c, flags, (dseq >> 8) & 0xff, dseq & 0xff, (dack >> 8) & 0xff, dack & 0xff,
            win >> 8, win & 0xff, sel, plen]
def sack(c, flags=0x10, dseq=0, dack=0, win=0xffff, sel=1, blocks=(0, 0, 0, 0), plen=0):
    out = [7, c, flags, (dseq >> 8) & 0xff, dseq & 0xff, (dack >> 8) & 0xff, dack & 0xff,
           win >> 8, win & 0xff, sel]
    for b in blocks: out += [(b >> 8) & 0xff, b & 0xff]
    return out + [plen]
def wait(c, units, seconds=False): return [2, c, units, 1 if seconds else 0]
def send(c, n32): return [3, c, n32]
def app(c, what): return [4, c, what]
def raw(c, frame): return [5, c, len(frame) - 14] + list(frame)

ACK, FIN, RST, SYN, PSH = 0x10, 0x01, 0x04, 0x02, 0x08
seeds = {
    'handshake_data_close': [0] + syn(0) + seg(0, ACK) + seg(0, ACK | PSH, plen=50) + send(0, 64)
        + seg(0, ACK, dack=0) + wait(0, 10) + seg(0, ACK | FIN) + app(0, 0) + seg(0, ACK),
    'cookies_always': [2] + syn(1) + seg(1, ACK) + seg(1, ACK | PSH, plen=20) + app(1, 1) + seg(1, ACK | FIN),
    'cookies_pressure': [1] + syn(0) + syn(1) + syn(2) + seg(2, ACK) + seg(0, ACK) + wait(0, 3, True),
    'out_of_order': [0] + syn(0) + seg(0, ACK) + seg(0, ACK, dseq=600, plen=100) + seg(0, ACK, dseq=300, plen=50)
        + seg(0, ACK, plen=100) + wait(0, 50),
    # 4096 bytes (the fuzz send buffer) in flight; three duplicate ACKs of nothing with SACK blocks.
    'sack_recovery': [0] + syn(0) + seg(0, ACK) + send(0, 128)
        + sack(0, dack=-4096, blocks=(2648, 1200, 1000, 500)) + sack(0, dack=-4096, blocks=(2648, 500, 0, 0))
        + sack(0, dack=-4096, blocks=(2648, 200, 0, 0)) + sack(0, dack=-4096, blocks=(2648, 1, 0, 0))
        + seg(0, ACK, dack=-2648) + seg(0, ACK, dack=0) + wait(0, 2, True),
    'rst_syn_in_window': [0] + syn(0) + seg(0, ACK) + seg(0, RST, dseq=10) + seg(0, SYN) + seg(0, RST),
    'zero_window': [0] + syn(0) + seg(0, ACK, win=0) + send(0, 100) + wait(0, 3, True) + seg(0, ACK, win=0)
        + wait(0, 5, True) + seg(0, ACK, win=4000),
    'app_not_reading': [0] + app(0, 3) + syn(0) + seg(0, ACK) + [seg(0, ACK, plen=230)[i] for i in range(11)]
        + seg(0, ACK, dseq=0, plen=230) + seg(0, ACK, plen=230) + app(0, 3) + app(0, 1),
    'refused_and_pool_full': [4] + syn(3) + seg(3, ACK) + syn(0) + syn(1) + syn(2) + seg(0, ACK) + seg(1, ACK) + seg(2, ACK),
    'rto_timeout': [0] + syn(2) + seg(2, ACK) + send(2, 50) + wait(2, 200, True),
    'raw_garbage': [0] + raw(0, bytes(range(60))) + raw(1, b'\xff' * 40),
    'bad_options': [0] + syn(0) + [6, 0, 2, 0, 1, 1, 8, 12, 0, 0] + [6, 0, 5, 10, 0, 0, 0, 0, 0, 0],
    'time_wait_reuse': [0] + syn(0) + seg(0, ACK) + app(0, 0) + seg(0, ACK | FIN, dack=0) + syn(0, 0x0f) + seg(0, ACK),
}
os.makedirs(os.path.join(HERE, 'corpus'), exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(HERE, 'corpus', name), 'wb') as f:
        f.write(bytes(b & 0xff for b in data))
print(f'wrote {len(seeds)} seeds')
