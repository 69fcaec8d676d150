#include "options.hh"

#include <rte_byteorder.h>

#include <cstring>

namespace l4::tcp {
namespace {

uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
uint32_t get32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}
void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8), p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}

}  // namespace

bool parse_options(const uint8_t* opt, uint32_t len, tcp_options& out) {
  uint32_t i = 0;
  while (i < len) {
    const uint8_t kind = opt[i];
    if (kind == 0) break;  // end of list
    if (kind == 1) {
      ++i;
      continue;
    }
    if (i + 1 >= len) return false;
    const uint8_t olen = opt[i + 1];
    if (olen < 2 || i + olen > len) return false;
    const uint8_t* v = opt + i + 2;
    switch (kind) {
      case 2:
        if (olen == 4) out.mss = get16(v);
        break;
      case 3:
        // RFC 7323 §2.3: a shift above 14 is used as 14.
        if (olen == 3) out.wscale = static_cast<int8_t>(v[0] > 14 ? 14 : v[0]);
        break;
      case 4:
        if (olen == 2) out.sack_permitted = true;
        break;
      case 5:
        if (olen >= 10 && (olen - 2) % 8 == 0) {
          const uint8_t n = static_cast<uint8_t>((olen - 2) / 8);
          out.n_sack = n > 4 ? 4 : n;
          for (uint8_t k = 0; k < out.n_sack; ++k)
            out.sack[k] = {get32(v + 8 * k), get32(v + 8 * k + 4)};
        }
        break;
      case 8:
        if (olen == 10) {
          out.has_ts = true;
          out.tsval = get32(v);
          out.tsecr = get32(v + 4);
        }
        break;
      default:
        break;  // unknown options are skipped by length
    }
    i += olen;
  }
  return true;
}

uint8_t write_options(uint8_t* out, const out_options& o) {
  uint8_t n = 0;
  if (o.mss != 0) {
    out[n++] = 2, out[n++] = 4;
    put16(out + n, o.mss), n += 2;
  }
  // Linux's layout: SACK-permitted rides in front of the timestamp so both fit in 12 bytes.
  if (o.ts) {
    if (o.sack_permitted) {
      out[n++] = 4, out[n++] = 2;
    } else {
      out[n++] = 1, out[n++] = 1;
    }
    out[n++] = 8, out[n++] = 10;
    put32(out + n, o.tsval), n += 4;
    put32(out + n, o.tsecr), n += 4;
  } else if (o.sack_permitted) {
    out[n++] = 1, out[n++] = 1, out[n++] = 4, out[n++] = 2;
  }
  if (o.wscale >= 0) {
    out[n++] = 1, out[n++] = 3, out[n++] = 3, out[n++] = static_cast<uint8_t>(o.wscale);
  }
  if (o.n_sack > 0) {
    const uint8_t max_blocks = static_cast<uint8_t>((40 - n - 4) / 8);
    const uint8_t blocks = o.n_sack < max_blocks ? o.n_sack : max_blocks;
    if (blocks > 0) {
      out[n++] = 1, out[n++] = 1, out[n++] = 5, out[n++] = static_cast<uint8_t>(2 + 8 * blocks);
      for (uint8_t k = 0; k < blocks; ++k) {
        put32(out + n, o.sack[k].start), n += 4;
        put32(out + n, o.sack[k].end), n += 4;
      }
    }
  }
  return n;
}

}  // namespace l4::tcp
