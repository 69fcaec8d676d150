#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_tcp_input. Input format: see tcp_input.cc ([mode], then
[op, client, args...]). Seeds are ordinary sessions; the fuzzer mutates the option fields."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def u16(v): return list(struct.pack('>H', v & 0xffff))
def u32(v): return list(struct.pack('>I', v & 0xffffffff))


def syn(c, mss=1460, ws=7, sack=True, ts=True, win=0xffff):
    sel = (1 if mss is not None else 0) | (2 if ws is not None else 0) | (4 if sack else 0) | (8 if ts else 0)
    out = [0, c, 0] + u16(win) + [sel]
    if mss is not None: out += u16(mss)
    if ws is not None: out += [ws]
    return out


def seg(c, flags, dseq=0, dack=0, win=0xffff, ts=True, sack=None, plen=0):
    sel = (1 if ts else 0)
    if sack:
        sel |= 8 | ((len(sack) - 1) << 4)
    out = [1, c, flags] + u16(dseq) + u16(dack) + u16(win) + [sel]
    for s, e in (sack or []):
        out += u16(s) + u16(e)
    return out + [plen]


def wait(c, units, seconds=False): return [2, c, units, 1 if seconds else 0]
def send(c, n384): return [3, c, n384]
def app(c, what): return [4, c, what]
def raw(c, frame): return [5, c, len(frame) - 14] + list(frame)


ACK, FIN, RST, SYN, PSH = 0x10, 0x01, 0x04, 0x02, 0x08
seeds = {
    'handshake_data_close': [0] + syn(0) + seg(0, ACK) + seg(0, ACK | PSH, plen=50) + send(0, 1)
        + seg(0, ACK) + wait(0, 10) + seg(0, ACK | FIN) + app(0, 0) + seg(0, ACK),
    'no_options': [0] + syn(0, None, None, False, False) + seg(0, ACK, ts=False) + send(0, 4)
        + seg(0, ACK, ts=False) + wait(0, 2, True),
    'cookies_always': [2] + syn(1) + seg(1, ACK) + seg(1, ACK | PSH, plen=20) + app(1, 1) + seg(1, ACK | FIN),
    'cookies_pressure': [1] + syn(0) + syn(1) + syn(2) + seg(2, ACK) + seg(0, ACK) + wait(0, 3, True),
    'out_of_order': [0] + syn(0) + seg(0, ACK) + seg(0, ACK, dseq=600, plen=100) + seg(0, ACK, dseq=300, plen=50)
        + seg(0, ACK, plen=100) + wait(0, 50),
    'sack_recovery': [0] + syn(0) + seg(0, ACK) + send(0, 10)
        + seg(0, ACK, dack=-3840, sack=[(-2400, -1200), (-1000, -500)]) + seg(0, ACK, dack=-3840, sack=[(-2400, -500)])
        + seg(0, ACK, dack=-3840, sack=[(-2400, -200)]) + seg(0, ACK, dack=-2400) + seg(0, ACK) + wait(0, 2, True),
    'rst_syn_in_window': [0] + syn(0) + seg(0, ACK) + seg(0, RST, dseq=10) + seg(0, SYN) + seg(0, RST),
    'zero_window': [0] + syn(0) + seg(0, ACK, win=0) + send(0, 2) + wait(0, 3, True) + seg(0, ACK, win=0)
        + wait(0, 1, True) + seg(0, ACK, win=4000),
    'zero_window_small': [0] + syn(0, 1460, None) + seg(0, ACK, win=0) + send(0, 4) + wait(0, 2, True)
        + seg(0, ACK, win=1) + seg(0, ACK, win=1) + seg(0, ACK, win=1),
    'app_not_reading': [0] + app(0, 3) + syn(0) + seg(0, ACK) + seg(0, ACK, plen=230)
        + seg(0, ACK, plen=230) + seg(0, ACK, plen=230) + app(0, 3) + app(0, 1),
    'refused_and_pool_full': [4] + syn(3) + seg(3, ACK) + syn(0) + syn(1) + syn(2) + seg(0, ACK) + seg(1, ACK) + seg(2, ACK),
    'rto_timeout': [0] + syn(2) + seg(2, ACK) + send(2, 2) + wait(2, 20, True),
    'big_buffers': [0x80] + syn(0) + seg(0, ACK) + send(0, 200) + seg(0, ACK) + wait(0, 1, True),
    'cubic': [0x08] + syn(0) + seg(0, ACK) + send(0, 10) + seg(0, ACK) + wait(0, 20) + seg(0, ACK),
    'raw_garbage': [0] + raw(0, bytes(range(60))) + raw(1, b'\xff' * 40),
    'bad_options': [0] + syn(0) + [6, 0, 1, 2, 0, 1, 1, 8, 12, 0, 0] + [6, 0, 1, 5, 10, 0, 0, 0, 0, 0, 0, 0],
    'time_wait_reuse': [0] + syn(0) + seg(0, ACK) + app(0, 0) + seg(0, ACK | FIN) + syn(0) + seg(0, ACK),
    'absolute_seq': [0] + syn(0) + seg(0, ACK) + [7, 0, ACK] + u32(0x80000000) + u32(0) + u16(1000) + [0, 0],
}
os.makedirs(os.path.join(HERE, 'corpus'), exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(HERE, 'corpus', name), 'wb') as f:
        f.write(bytes(b & 0xff for b in data))
print(f'wrote {len(seeds)} seeds')
