#!/usr/bin/python3
# Derives malformed inputs from the ClientHellos captured with `openssl s_client` (see README in
# tests/certs). Run from this folder: /usr/bin/python3 make_corpus.py. Output is committed.
import random

base = open('corpus/clienthello_tls13_sni_alpn.bin', 'rb').read()
rec, body = base[:5], base[5:]
out = {}
for cut in (1, 4, 5, 9, 43, 100, len(base) - 1):
    out[f'truncated_{cut}'] = base[:cut]
out['record_len_too_big'] = base[:3] + b'\xff\xff' + body
out['record_len_short'] = base[:3] + (len(body) - 10).to_bytes(2, 'big') + body
out['handshake_len_too_big'] = rec + body[:1] + b'\xff\xff\xff' + body[4:]
out['zero_length_record'] = b'\x16\x03\x01\x00\x00'
out['sslv2_hello'] = bytes.fromhex('802e0103010015000000100100800300800700c0060040020080040080') + bytes(16)
out['http_get'] = b'GET / HTTP/1.1\r\nHost: example.test\r\n\r\n'
out['alert_first'] = b'\x15\x03\x03\x00\x02\x02\x28'
out['ccs_first'] = b'\x14\x03\x03\x00\x01\x01' + base
out['appdata_first'] = b'\x17\x03\x03\x00\x05hello'
out['heartbeat_record'] = b'\x18\x03\x03\x00\x03\x01\x40\x00'
out['two_clienthellos'] = base + base
# The ClientHello split over two handshake records (legal) and over a record per byte (legal, slow).
mid = len(body) // 2
out['split_two_records'] = (b'\x16\x03\x01' + mid.to_bytes(2, 'big') + body[:mid] +
                            b'\x16\x03\x01' + (len(body) - mid).to_bytes(2, 'big') + body[mid:])
out['split_per_byte'] = b''.join(b'\x16\x03\x01\x00\x01' + bytes([b]) for b in body[:60])
# SNI extension with a length running past the end.
i = base.find(b'example.test')
if i > 0:
    b = bytearray(base)
    b[i - 2:i] = (0x4000).to_bytes(2, 'big')
    out['sni_len_overflow'] = bytes(b)
    b = bytearray(base)
    b[i:i + 12] = b'exa\x00ple.test'
    out['sni_with_nul'] = bytes(b)
rnd = random.Random(4)
for n in range(8):
    b = bytearray(base)
    for _ in range(rnd.randint(1, 6)):
        b[rnd.randrange(5, len(b))] = rnd.randrange(256)
    out[f'bitflip_{n}'] = bytes(b)
out['random_garbage'] = bytes(rnd.randrange(256) for _ in range(512))
for name, data in out.items():
    open(f'corpus/{name}.bin', 'wb').write(data)
print(len(out), 'inputs')
