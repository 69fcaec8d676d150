#pragma once
// A bounded byte FIFO over caller-owned memory (power-of-two capacity). Reads and writes expose the
// contiguous region at the cursor so that io_uring send/recv work straight on it, without copies.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace edge::upstream {

class byte_ring {
 public:
  byte_ring() = default;
  byte_ring(std::byte* mem, size_t cap) : buf_(mem), cap_(cap) {}  // cap: power of two

  size_t size() const { return static_cast<size_t>(wr_ - rd_); }
  size_t space() const { return cap_ - size(); }
  size_t capacity() const { return cap_; }
  bool empty() const { return wr_ == rd_; }
  void clear() { rd_ = wr_ = 0; }

  std::span<std::byte> write_region() {
    size_t off = static_cast<size_t>(wr_) & (cap_ - 1);
    return {buf_ + off, std::min(space(), cap_ - off)};
  }
  void commit(size_t n) { wr_ += n; }

  std::span<const std::byte> read_region() const {
    size_t off = static_cast<size_t>(rd_) & (cap_ - 1);
    return {buf_ + off, std::min(size(), cap_ - off)};
  }
  void consume(size_t n) { rd_ += std::min(n, size()); }

  // Copies as much of src as fits; returns the count copied.
  size_t write(std::span<const std::byte> src) {
    size_t done = 0;
    while (done < src.size()) {
      auto r = write_region();
      if (r.empty()) break;
      size_t n = std::min(r.size(), src.size() - done);
      std::memcpy(r.data(), src.data() + done, n);
      commit(n);
      done += n;
    }
    return done;
  }

 private:
  std::byte* buf_ = nullptr;
  size_t cap_ = 0;
  uint64_t rd_ = 0;
  uint64_t wr_ = 0;
};

}  // namespace edge::upstream
