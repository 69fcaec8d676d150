#pragma once
// TCP option parsing and writing (MSS, window scale, SACK-permitted, SACK, timestamps).
#include <cstdint>

#include "seq.hh"

namespace l4::tcp {

struct tcp_options {
  uint16_t mss = 0;    // 0: absent
  int8_t wscale = -1;  // -1: absent
  bool sack_permitted = false;
  bool has_ts = false;
  uint32_t tsval = 0, tsecr = 0;
  uint8_t n_sack = 0;
  seq_range sack[4];
};

// Parses the option bytes of a TCP header. False when the list is malformed.
bool parse_options(const uint8_t* opt, uint32_t len, tcp_options& out);

// What a segment we send carries. Returns the option length written (multiple of 4, <= 40).
struct out_options {
  uint16_t mss = 0;    // SYN-ACK only
  int8_t wscale = -1;  // SYN-ACK only
  bool sack_permitted = false;
  bool ts = false;
  uint32_t tsval = 0, tsecr = 0;
  uint8_t n_sack = 0;
  seq_range sack[4];
};
uint8_t write_options(uint8_t* out, const out_options& o);

}  // namespace l4::tcp
