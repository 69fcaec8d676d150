// Per-request inspection: head parse → block-mode scan of head fields → stream-mode body scan →
// rule evaluation (chains, negation, anomaly score, exclusions) → verdict.
#include "waf/inspector.hh"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace waf {
namespace {

inline bool bit(const std::vector<uint64_t>& v, size_t i) {
  return (v[i >> 6] >> (i & 63)) & 1;
}
inline void set_bit(std::vector<uint64_t>& v, size_t i) {
  v[i >> 6] |= uint64_t(1) << (i & 63);
}
inline size_t words(size_t n) {
  return (n + 63) / 64;
}

// memcpy that accepts an empty view: string_view{} has a null data(), and memcpy from null is
// undefined even for 0 bytes (UBSan, found by libFuzzer on "?name" and "Cookie: name").
inline void copy_bytes(char* dst, std::string_view s) {
  if (!s.empty()) std::memcpy(dst, s.data(), s.size());
}

void copy_bounded(char* dst, size_t cap, uint8_t& len, std::string_view s) {
  size_t n = std::min(cap, s.size());
  if (n != 0) std::memcpy(dst, s.data(), n);  // an empty view may have a null data()
  len = static_cast<uint8_t>(n);
}

bool selector_accepts(const selector& sel, std::string_view name);
bool condition_accepts(const condition& c, target where, std::string_view name) {
  for (const auto& s : c.selectors)
    if (s.where == where && selector_accepts(s, name)) return true;
  return false;
}

bool selector_accepts(const selector& sel, std::string_view name) {
  if (!sel.name.empty() && !iequals(sel.name, name)) return false;
  for (const auto& ex : sel.exclude)
    if (iequals(ex, name)) return false;
  return true;
}

// A WebSocket opening handshake (RFC 6455 4.1): GET, Upgrade: websocket, a Connection header with
// the upgrade token, no body. Other upgrades (h2c, ...) stay HTTP/1: what follows a switch to them
// would not parse, which fails closed.
bool asks_websocket(const request_head& h) {
  if (h.method != "GET" || h.chunked || h.content_length != 0) return false;
  if (!iequals(h.header("upgrade"), "websocket")) return false;
  std::string_view c = h.header("connection");
  while (!c.empty()) {
    size_t comma = c.find(',');
    std::string_view tok = c.substr(0, comma);
    c = comma == std::string_view::npos ? std::string_view{} : c.substr(comma + 1);
    while (!tok.empty() && (tok.front() == ' ' || tok.front() == '\t')) tok.remove_prefix(1);
    while (!tok.empty() && (tok.back() == ' ' || tok.back() == '\t')) tok.remove_suffix(1);
    if (iequals(tok, "upgrade")) return true;
  }
  return false;
}

}  // namespace

const char* to_string(verdict_kind k) {
  switch (k) {
    case verdict_kind::need_more:
      return "need_more";
    case verdict_kind::pass:
      return "pass";
    case verdict_kind::detect:
      return "detect";
    case verdict_kind::block:
      return "block";
  }
  return "?";
}

namespace {
// Each name=value pair of a query (a pair without `=` has an empty value; empty pairs skipped).
template <class F>
void for_each_pair(std::string_view q, F&& f) {
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    f(pair.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
  }
}

// A count as ModSecurity's numeric variables hold it (files_sizes, *_combined_size).
struct decimal {
  char buf[24];
  size_t len;
  explicit decimal(uint64_t v) {
    int k = std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
    len = k > 0 ? static_cast<size_t>(k) : 0;
  }
  std::string_view view() const { return {buf, len}; }
};
}  // namespace

struct inspector::scan_ctx {
  inspector* self;
  worker_scratch* ws;
  worker_stats* st;
  const scan_group* g;
  target where;
  std::string_view name;
  const char* data;
  size_t len;
  unsigned long long base;  // stream offset of data[0]
  bool step = false;        // an intermediate value of multi_match (only multi_steps entries)
  // Block scans: a block_dbs() value scan counts for the groups whose group_serial() is `serial`;
  // a scan or evaluation for one group (`group` >= 0) only for that group's entries.
  uint64_t serial = 0;
  int32_t group = -1;
  // The scanned database's Hyperscan ids (local to it) to entry indices.
  std::span<const uint32_t> ids;
};

common::result<std::unique_ptr<inspector>> inspector::create(
    std::shared_ptr<const bound_policy> pol, const worker_scratch& ws, mode m) {
  if (!pol) return common::fail("inspector: no policy");
  std::unique_ptr<inspector> in(new inspector());
  in->rs_ = &pol->rules();
  in->mode_ = m;
  const auto& lim = pol->pol().limits;
  if (m == mode::http) {
    in->head_buf_ = std::make_unique<char[]>(lim.max_head_bytes);
    in->header_slots_ = std::make_unique<http_header[]>(lim.max_header_count);
    in->parser_ = std::make_unique<body_parser>();
  }
  const ruleset& rs = *in->rs_;
  in->cond_matched_.assign(words(rs.conditions().size()), 0);
  in->cond_seen_.assign(words(rs.conditions().size()), 0);
  in->rule_fired_.assign(words(rs.rules().size()), 0);
  in->rule_candidate_.assign(words(rs.rules().size()), 0);
  in->gates_fired_.assign(words(rs.gates().size()), 0);
  in->field_sets_.assign(rs.field_slots(), 0);
  in->candidates_.reserve(rs.rules().size());
  in->path_excl_.assign(pol->exclusions().size(), 0);
  target want = m == mode::http ? target::body : target::raw_payload;
  for (uint32_t gi = 0; gi < rs.groups().size(); ++gi) {
    const scan_group& g = rs.groups()[gi];
    if (!g.stream || g.where != want || !g.db) continue;
    stream_slot s;
    s.group = gi;
    hs_stream_t* h = nullptr;
    if (hs_open_stream(g.db.get(), 0, &h) != HS_SUCCESS)
      return common::fail("hs_open_stream failed");
    s.stream.reset(h);
    in->streams_.push_back(std::move(s));
  }
  (void)ws;
  in->pol_ = std::move(pol);
  return in;
}

inspector::~inspector() = default;

size_t inspector::state_bytes() const {
  size_t b = sizeof(*this);
  if (head_buf_)
    b += pol_->pol().limits.max_head_bytes +
         pol_->pol().limits.max_header_count * sizeof(http_header);
  if (parser_) b += sizeof(body_parser);
  if (field_mem_) b += size_t{field_.name_cap} + field_.value_cap;
  b += (cond_matched_.size() + cond_seen_.size() + rule_fired_.size() + rule_candidate_.size() +
        gates_fired_.size() + field_sets_.size()) *
       8;
  b += candidates_.capacity() * 4 + path_excl_.size() + streams_.capacity() * sizeof(stream_slot);
  for (const auto& s : streams_) b += rs_->groups()[s.group].stream_state_bytes;
  return b;
}

void inspector::reset_request() {
  pending_reset_ = false;
  stage_ = stage::head;
  head_len_ = head_end_ = 0;
  head_scan_ = {};
  head_ = {};
  perr_ = http_error::none;
  body_remaining_ = body_seen_ = 0;
  args_size_ = 0;
  chunked_.reset();
  body_partial_ = limit_hit_ = false;
  proc_ = body_processor::none;
  if (parser_) parser_->emplace<std::monostate>();
  body_err_ = body_error::none;
  mp_flags_ = 0;
  raw_stream_ = true;
  body_parsing_ = body_block_ = arg_truncated_ = upgrade_asked_ = false;
  std::fill(cond_matched_.begin(), cond_matched_.end(), 0);
  std::fill(cond_seen_.begin(), cond_seen_.end(), 0);
  std::fill(rule_fired_.begin(), rule_fired_.end(), 0);
  std::fill(rule_candidate_.begin(), rule_candidate_.end(), 0);
  std::fill(gates_fired_.begin(), gates_fired_.end(), 0);
  gates_decided_ = false;
  std::fill(field_sets_.begin(), field_sets_.end(), 0);
  candidates_.clear();
  std::fill(path_excl_.begin(), path_excl_.end(), 0);
  score_ = 0;
  decided_block_ = any_fired_ = engine_error_ = false;
  n_matches_ = matches_dropped_ = 0;
  n_hits_ = 0;
  for (auto& s : streams_) {
    if (s.used) hs_reset_stream(s.stream.get(), 0, nullptr, nullptr, nullptr);
    s.used = false;
    s.offset = 0;
    s.tstate.reset();
  }
}

verdict inspector::block(worker_stats& st, uint16_t status, size_t consumed) {
  stage_ = stage::blocked;
  status_ = status;
  if (status == 400 && body_block_) {
    st.blocked_body_error.add();
  } else if (status == 400) {
    st.blocked_parse.add();
    st.parse_errors[static_cast<size_t>(perr_)].add();
  } else if (status == 413) {
    st.blocked_body_limit.add();
  } else if (engine_error_) {
    st.blocked_engine_error.add();
  } else if (mode_ == mode::raw) {
    st.raw_blocked.add();
  } else {
    st.blocked_rules.add();
  }
  verdict v;
  v.kind = verdict_kind::block;
  v.status = status;
  v.consumed = consumed;
  return v;
}

bool inspector::rule_excluded(uint32_t rule_index, std::string_view field) const {
  const auto& ex = pol_->exclusions();
  for (size_t i = 0; i < ex.size(); ++i) {
    if (!path_excl_[i] || !ex[i].rule_mask[rule_index]) continue;
    if (ex[i].arg.empty() || iequals(ex[i].arg, field)) return true;
  }
  return false;
}

int inspector::on_match(unsigned id, unsigned long long, unsigned long long to, unsigned, void* c) {
  auto& x = *static_cast<scan_ctx*>(c);
  // An id outside the map is a database that does not belong to this ruleset: match_entry fails
  // closed on it.
  x.self->match_entry(id < x.ids.size() ? x.ids[id] : UINT32_MAX, x, to);
  return 0;  // keep scanning: other rules may match the same field
}

void inspector::match_entry(uint32_t id, scan_ctx& x, unsigned long long to) {
  if (id >= rs_->entries().size()) {  // a database that does not belong to this ruleset
    engine_failed(*x.st);
    return;
  }
  const entry& e = rs_->entries()[id];
  if (x.step && !e.multi_steps) return;
  if (x.group >= 0 ? e.group != static_cast<uint32_t>(x.group)
                   : x.serial != 0 && x.ws->group_serial()[e.group] != x.serial)
    return;
  const compiled_condition& cc = rs_->conditions()[e.condition];
  // A condition in a MATCHED_VAR chain records every field it holds on, not only the first.
  uint64_t fbit = cc.field_slot >= 0 ? field_bit(x.where, x.name) : 0;
  const bool seen =
      bit(cond_matched_, e.condition) && (cc.field_slot < 0 || (field_sets_[cc.field_slot] & fbit));
  // A capture feeds the next condition on every field it holds on: a second field of the same
  // name (or field id) is tested too, unless the derived condition already held there.
  const bool capture = cc.derived_next >= 0;
  if (seen && (!capture || (bit(cond_matched_, static_cast<uint32_t>(cc.derived_next)) &&
                            (field_sets_[rs_->conditions()[cc.derived_next].field_slot] & fbit))))
    return;
  if (!pol_->enabled(e.rule)) return;
  if (!condition_accepts(*cc.cond, x.where, x.name)) return;
  if (rule_excluded(e.rule, x.name)) return;
  bool confirm_error = false;
  int rc = 0;
  if (capture || e.prefilter || e.pcre_only) {
    // The capture program is the condition's regex with its groups: it is the confirm too.
    rc = pcre2_match(capture ? cc.capture.get() : cc.confirm.get(),
                     reinterpret_cast<PCRE2_SPTR>(x.data), x.len, 0, 0, x.ws->match_data(),
                     x.ws->match_context());
    if (rc == PCRE2_ERROR_NOMATCH) {
      if (e.prefilter || e.pcre_only) x.st->prefilter_rejected.add();
      return;
    }
    if (rc < 0) {
      // A limit (match, depth, JIT stack) or another error: PCRE2 could not decide, and padding
      // in front of a payload is how an attacker gets there. Fail closed: a match of the rule,
      // so a negated condition is left unmatched (it holds), a plain one matches.
      x.st->confirm_errors.add();
      if (cc.cond->negate) return;
      confirm_error = true;
    } else if (e.prefilter || e.pcre_only) {
      x.st->prefilter_confirmed.add();
    }
  }
  if (!seen) {
    set_bit(cond_matched_, e.condition);
    if (cc.field_slot >= 0) field_sets_[cc.field_slot] |= fbit;
    size_t end = to >= x.base ? static_cast<size_t>(to - x.base) : 0;
    end = std::min(end, x.len);
    size_t start = end > sizeof(hit::excerpt) ? end - sizeof(hit::excerpt) : 0;
    record_hit(e.condition, x, std::string_view(x.data + start, end - start), confirm_error);
    if (!bit(rule_candidate_, e.rule)) {
      set_bit(rule_candidate_, e.rule);
      candidates_.push_back(e.rule);
    }
  }
  if (capture) derive_on(x, cc, fbit, rc);
}

void inspector::record_hit(uint32_t condition, const scan_ctx& x, std::string_view excerpt,
                           bool confirm_error) {
  hit& h = hits_[n_hits_++ % hit_ring];
  h.condition = condition;
  h.where = x.where;
  h.confirm_error = confirm_error;
  copy_bounded(h.field, sizeof h.field, h.field_len, x.name);
  copy_bounded(h.excerpt, sizeof h.excerpt, h.excerpt_len, excerpt);
}

// ModSecurity's capture: prev's regex ran on this field (x.data, after prev's transformations);
// its groups, literal text and request headers make the derived condition's value (and operand,
// if that is built at request time), in the worker's buf_d. Both are cut at half the buffer.
void inspector::derive_on(scan_ctx& x, const compiled_condition& prev, uint64_t fbit, int rc) {
  const uint32_t di = static_cast<uint32_t>(prev.derived_next);
  const compiled_condition& dc = rs_->conditions()[di];
  worker_scratch& ws = *x.ws;
  bool error = rc < 0;  // the capture could not be decided (counted): the derived one holds
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(ws.match_data());
  const size_t pairs = rc > 0 ? static_cast<size_t>(rc) : worker_scratch::captures;
  constexpr size_t half = worker_scratch::buffer_bytes / 2;
  auto build = [&](const std::vector<value_part>& parts, char* out) {
    size_t n = 0;
    auto put = [&](std::string_view v) {
      size_t k = std::min(v.size(), half - n);
      if (k) std::memcpy(out + n, v.data(), k);
      n += k;
    };
    for (const value_part& p : parts) {
      if (p.k == value_part::kind::text) {
        put(p.text);
      } else if (p.k == value_part::kind::header) {
        put(head_.header(p.text));
      } else if (!error && p.group < pairs && ov[2 * p.group] != PCRE2_UNSET &&
                 ov[2 * p.group] <= ov[2 * p.group + 1] && ov[2 * p.group + 1] <= x.len) {
        put(std::string_view(x.data + ov[2 * p.group], ov[2 * p.group + 1] - ov[2 * p.group]));
      }
    }
    return n;
  };
  const condition& c = *dc.cond;
  char* value = ws.buf_d();
  size_t n = build(c.derive, value);
  n = apply_transforms(c.transforms, value, n, half, ws.buf_c());
  std::string_view operand = c.args[0];
  if (!c.operand.empty()) operand = std::string_view(value + half, build(c.operand, value + half));
  bool holds = true;
  if (!error) {
    holds = eval_derived_op(dc, std::string_view(value, n), operand, ws, &error);
    if (error) x.st->confirm_errors.add();  // PCRE2 could not decide: fail closed, as a match
    if (!error && c.negate) holds = !holds;
  }
  if (!holds) return;
  set_bit(cond_matched_, di);
  field_sets_[dc.field_slot] |= fbit;
  record_hit(di, x, std::string_view(value, std::min<size_t>(n, sizeof(hit::excerpt))), error);
}

// multi_match over Hyperscan: the values before the group's transformations and after each but
// the last (that one was just scanned), where a transformation changed the value and it differs
// from the final one, scanned for the multi_steps entries (as ModSecurity, which runs the operator
// again only on a changed value). In buf_e's halves, each as large as the field buffer (a match's
// capture step uses buf_d while the scan goes on).
void inspector::scan_steps(worker_scratch& ws, worker_stats& st, const scan_group& g,
                           const scan_ctx& last, std::string_view raw) {
  // g.db holds the group's multi_steps entries alone.
  constexpr size_t half = worker_scratch::buffer_bytes;  // buf_e holds two full buffers
  char* cur = ws.buf_e();
  char* before = cur + half;
  size_t n = std::min(raw.size(), half);
  copy_bytes(cur, raw.substr(0, n));
  std::string_view fin(last.data, last.len);
  bool changed = true;
  for (size_t k = 0; k < g.transforms.size(); ++k) {
    if (changed && std::string_view(cur, n) != fin) {
      scan_ctx x = last;
      x.data = cur;
      x.len = n;
      x.step = true;
      x.ids = g.db_entries;
      st.bytes_scanned.add(n);
      if (hs_scan(g.db.get(), cur, static_cast<unsigned>(n), 0, ws.hs(), on_match, &x) !=
          HS_SUCCESS)
        engine_failed(st);
    }
    copy_bytes(before, std::string_view(cur, n));
    size_t m = apply_transform(g.transforms[k], cur, n, half, ws.buf_c());
    changed = m != n || std::memcmp(cur, before, n) != 0;
    n = m;
  }
}

bool inspector::eval_steps(const compiled_condition& cc, std::string_view raw,
                           worker_scratch& ws) const {
  constexpr size_t half = worker_scratch::buffer_bytes;  // buf_e holds two full buffers
  char* cur = ws.buf_e();
  char* before = cur + half;
  size_t n = std::min(raw.size(), half);
  copy_bytes(cur, raw.substr(0, n));
  if (eval_code_op(cc, std::string_view(cur, n))) return true;
  for (transform t : cc.cond->transforms) {
    copy_bytes(before, std::string_view(cur, n));
    size_t m = apply_transform(t, cur, n, half, ws.buf_c());
    bool changed = m != n || std::memcmp(cur, before, n) != 0;
    n = m;
    if (changed && eval_code_op(cc, std::string_view(cur, n))) return true;
  }
  return false;
}

void inspector::scan_head(worker_scratch& ws, worker_stats& st) {
  for (size_t t = 0; t < target_count; ++t)
    if (rs_->block_targets() & (1u << t)) scan_target(ws, st, static_cast<target>(t));
}

void inspector::scan_pair(worker_scratch& ws, worker_stats& st, target where, std::string_view n,
                          std::string_view v) {
  char* dec = ws.buf_b();
  copy_bytes(dec, n);
  size_t nl = apply_transform(transform::url_decode, dec, n.size(), n.size(), nullptr);
  copy_bytes(dec + nl, v);
  size_t vl = apply_transform(transform::url_decode, dec + nl, v.size(), v.size(), nullptr);
  std::string_view name(dec, nl);
  if (where == target::args)
    emit_field(ws, st, where, name, std::string_view(dec + nl, vl));
  else
    emit_field(ws, st, where, name, name);
}

// What the body processors hand over, scanned at once with the block-mode groups of its target
// (as query arguments are at head time). Runs inside body_parse(), on the worker's scratch.
struct inspector::body_fields final : body_sink {
  inspector* self;
  worker_scratch* ws;
  worker_stats* st;
  body_fields(inspector* i, worker_scratch* w, worker_stats* s) : self(i), ws(w), st(s) {}
  void arg(std::string_view name, std::string_view value, bool truncated) override {
    if (truncated) self->arg_truncated(*st);
    self->args_size_ += name.size() + value.size();
    self->emit_field(*ws, *st, target::args, name, value);
    self->emit_field(*ws, *st, target::arg_names, name, name);
  }
  void file(std::string_view field, std::string_view filename, uint64_t size) override {
    self->emit_field(*ws, *st, target::files, field, filename);
    self->emit_field(*ws, *st, target::files_names, field, field);
    self->emit_field(*ws, *st, target::files_sizes, field, decimal(size).view());
  }
  void part_header(std::string_view part, std::string_view line) override {
    self->emit_field(*ws, *st, target::multipart_part_headers, part, line);
  }
};

namespace {

// Whether a block group scans this field: every field of a target it has a selector without a
// name for, else only the named ones (e.g. of all headers only User-Agent).
bool group_wants(const scan_group& g, target where, std::string_view name) {
  if (g.unnamed & (1u << static_cast<unsigned>(where))) return true;
  for (const auto& [t, n] : g.names)
    if (t == where && iequals(n, name)) return true;
  return false;
}

}  // namespace

// One field through every block group: each group's transformations make a value of it in the
// worker's arena; groups that make the same bytes share it, and each distinct value is scanned
// once with block_dbs(), a match counting for the groups that made that value (group_serial()).
// Code operators, negated marks and multi_match steps run per group on its own value.
void inspector::emit_field(worker_scratch& ws, worker_stats& st, target where,
                           std::string_view name, std::string_view value) {
  const uint32_t bit = 1u << static_cast<unsigned>(where);
  if (!(rs_->block_targets() & bit)) return;
  // Plain locals, not a structured binding: clang 14 cannot capture one in a lambda.
  const auto db_range = rs_->block_db_range(where);
  const uint32_t first_db = db_range.first, n_dbs = db_range.second;
  const uint64_t* serials = ws.group_serial();
  struct pending {
    size_t off, len;
    uint64_t serial;
  };
  constexpr size_t max_pending = 64;
  pending vals[max_pending];
  size_t nv = 0, used = 0;
  char* arena = ws.arena();
  auto flush = [&] {
    for (size_t i = 0; i < nv; ++i) {
      scan_ctx x{this, &ws, &st, nullptr, where, name, arena + vals[i].off, vals[i].len, 0};
      x.serial = vals[i].serial;
      st.bytes_scanned.add(x.len);
      for (uint32_t d = first_db; d < first_db + n_dbs; ++d) {
        // Only the databases holding entries of a group that made this value.
        bool wanted = false;
        for (uint32_t g : rs_->block_db_groups(d)) wanted = wanted || serials[g] == x.serial;
        if (!wanted) continue;
        x.ids = rs_->block_db_entries(d);
        if (hs_scan(rs_->block_dbs()[d].get(), x.data, static_cast<unsigned>(x.len), 0, ws.hs(),
                    on_match, &x) != HS_SUCCESS)
          engine_failed(st);
      }
    }
    nv = used = 0;
  };
  const size_t vlen = std::min(value.size(), worker_scratch::buffer_bytes);
  const auto groups = rs_->groups();
  if (groups.size() > ws.group_slots()) {  // scratch not prepared for this ruleset: fail closed
    engine_failed(st);
    return;
  }
  // Levels kept from the previous group's pipeline (`path`): the value after its first k+1
  // transformations is in ws.level(k) (size lens[k]) for k < depth.
  const std::vector<transform>* path = nullptr;
  size_t depth = 0;
  size_t lens[worker_scratch::levels];
  for (uint32_t gi : rs_->block_order()) {
    const scan_group& g = groups[gi];
    if (!(g.targets & bit) || (!g.hs && g.direct.empty())) continue;
    if (!group_wants(g, where, name)) continue;
    const std::vector<transform>& tr = g.transforms;
    size_t k = 0;
    while (k < tr.size() && k < depth && (*path)[k] == tr[k]) ++k;
    const char* buf = k ? ws.level(k - 1) : value.data();
    size_t len = k ? lens[k - 1] : vlen;
    for (; k < tr.size() && k < worker_scratch::levels; ++k) {
      char* out = ws.level(k);
      copy_bytes(out, std::string_view(buf, len));
      len = lens[k] = apply_transform(tr[k], out, len, worker_scratch::buffer_bytes, ws.buf_c());
      buf = out;
    }
    path = &tr;
    depth = k;
    bool in_arena = false;
    if (k < tr.size()) {  // longer than the kept levels: the rest in the arena, in place
      if (nv == max_pending || worker_scratch::arena_bytes - used < worker_scratch::buffer_bytes)
        flush();
      char* out = arena + used;
      copy_bytes(out, std::string_view(buf, len));
      len = apply_transforms(std::span<const transform>(tr).subspan(k), out, len,
                             worker_scratch::buffer_bytes, ws.buf_c());
      buf = out;
      in_arena = true;
    }
    for (uint32_t id : g.negated) {
      const entry& e = rs_->entries()[id];
      if (condition_accepts(*rs_->conditions()[e.condition].cond, where, name))
        set_bit(cond_seen_, e.condition);
    }
    scan_ctx x{this, &ws, &st, &g, where, name, buf, len, 0};
    x.group = static_cast<int32_t>(gi);
    for (uint32_t id : g.direct) {
      const entry& e = rs_->entries()[id];
      const compiled_condition& cc = rs_->conditions()[e.condition];
      if (e.multi_steps ? eval_steps(cc, value, ws) : eval_code_op(cc, std::string_view(buf, len)))
        match_entry(id, x, len);
    }
    if (g.multi_steps && g.db) scan_steps(ws, st, g, x, value);
    if (!g.hs || n_dbs == 0) continue;
    size_t v = 0;
    while (v < nv && !(vals[v].len == len && std::memcmp(arena + vals[v].off, buf, len) == 0)) ++v;
    if (v == nv) {
      if (!in_arena) {
        if (nv == max_pending || worker_scratch::arena_bytes - used < worker_scratch::buffer_bytes)
          flush();
        copy_bytes(arena + used, std::string_view(buf, len));
        v = nv;
      }
      vals[nv++] = pending{used, len, ws.next_serial()};
      used += len;
    }
    ws.group_serial()[gi] = vals[v].serial;
  }
  flush();
}

// A name or value longer than the policy's body limits cannot be scanned whole: counted once per
// request; under on_body_limit: reject the request gets a 413 (a payload behind padding must not
// pass the args rules), under inspect_partial the cut field is scanned, as the policy asks.
void inspector::arg_truncated(worker_stats& st) {
  if (arg_truncated_) return;
  arg_truncated_ = true;
  st.form_truncated.add();
  if (pol_->pol().on_body_limit == body_limit_action::reject) limit_hit_ = true;
}

void inspector::body_start(worker_stats& st) {
  proc_ = processor_for(head_.header("content-type"));
  const body_limits& bl = pol_->pol().body;
  body_parsing_ = true;
  // REQUEST_BODY (the raw stream) also sees JSON bodies, as in ModSecurity v3 (920273 at PL4);
  // urlencoded and multipart bodies are their fields only.
  raw_stream_ = proc_ == body_processor::none || proc_ == body_processor::json;
  // The field buffer (name + value room of the policy, 65 KiB by default) only for connections
  // that send a body a processor parses: GETs and opaque bodies never pay for it.
  if (proc_ != body_processor::none && !field_mem_) {
    field_mem_ = std::make_unique<char[]>(size_t{bl.max_name_bytes} + bl.max_value_bytes);
    field_.name = field_mem_.get();
    field_.name_cap = bl.max_name_bytes;
    field_.value = field_mem_.get() + bl.max_name_bytes;
    field_.value_cap = bl.max_value_bytes;
  }
  switch (proc_) {
    case body_processor::none:
      body_parsing_ = false;
      break;
    case body_processor::urlencoded:
      st.body_urlencoded.add();
      parser_->emplace<urlencoded_parser>().start(&field_, bl);
      break;
    case body_processor::multipart: {
      st.body_multipart.add();
      auto& m = parser_->emplace<multipart_parser>();
      if (!m.start(head_.header("content-type"), &field_, bl)) body_failed(st, m.error());
      break;
    }
    case body_processor::json:
      st.body_json.add();
      parser_->emplace<json_parser>().start(&field_, bl);
      break;
  }
}

// The body cannot be parsed: counted; blocked (400) or, under inspect_raw, the rest of it goes
// through the stream scan as an opaque body would, the field cut at the error scanned as it is.
void inspector::body_failed(worker_stats& st, body_error e) {
  body_parsing_ = false;
  if (body_err_ != body_error::none) return;
  body_err_ = e;
  st.body_errors[static_cast<size_t>(e)].add();
  if (pol_->pol().on_body_error == body_error_action::block) {
    body_block_ = true;
  } else {
    raw_stream_ = true;
    st.body_inspected_raw.add();
  }
}

void inspector::body_parse(worker_scratch& ws, worker_stats& st, const char* p, size_t n) {
  if (!body_parsing_ || n == 0) return;
  body_fields sink(this, &ws, &st);
  bool ok = true;
  body_error e = body_error::none;
  if (auto* u = std::get_if<urlencoded_parser>(parser_.get())) {
    ok = u->feed(p, n, sink);
    e = u->error();
  } else if (auto* m = std::get_if<multipart_parser>(parser_.get())) {
    ok = m->feed(p, n, sink);
    e = m->error();
    if (!ok) m->flush_partial(sink);
    // Under on_body_error: block a strict error ends the request where it is seen: the bytes
    // after it never reach a backend that acts on each part as it streams in.
    if (ok && !body_block_ && m->strict_error() &&
        pol_->pol().on_body_error == body_error_action::block) {
      st.multipart_strict.add();
      mp_flags_ = m->flags();  // which one, for the audit line (body_vars will not run)
      body_block_ = true;
    }
  } else if (auto* j = std::get_if<json_parser>(parser_.get())) {
    ok = j->feed(p, n, sink);
    e = j->error();
    if (!ok) j->flush_partial(sink);
  }
  if (!ok) body_failed(st, e);
}

void inspector::body_finish(worker_scratch& ws, worker_stats& st) {
  if (proc_ == body_processor::none) return;
  body_fields sink(this, &ws, &st);
  if (body_parsing_ && body_seen_ > 0) {
    bool ok = true;
    body_error e = body_error::none;
    if (auto* u = std::get_if<urlencoded_parser>(parser_.get())) {
      ok = u->finish(sink);
      e = u->error();
    } else if (auto* m = std::get_if<multipart_parser>(parser_.get())) {
      ok = m->finish(sink);
      e = m->error();
      if (!ok) m->flush_partial(sink);
    } else if (auto* j = std::get_if<json_parser>(parser_.get())) {
      ok = j->finish(sink);
      e = j->error();
      if (!ok) j->flush_partial(sink);
    }
    if (!ok) body_failed(st, e);
  }
  body_parsing_ = false;
  body_vars(ws, st);
}

void inspector::flush_open_field(worker_scratch& ws, worker_stats& st) {
  body_fields sink(this, &ws, &st);
  if (auto* u = std::get_if<urlencoded_parser>(parser_.get()))
    (void)u->finish(sink);  // emits the pending name=value; an error here changes nothing now
  else if (auto* m = std::get_if<multipart_parser>(parser_.get()))
    m->flush_partial(sink);
  else if (auto* j = std::get_if<json_parser>(parser_.get()))
    j->flush_partial(sink);
}

// ModSecurity's scalar body variables, once the body ended (body_vars target).
void inspector::body_vars(worker_scratch& ws, worker_stats& st) {
  const std::string_view err = body_err_ != body_error::none ? "1" : "0";
  emit_field(ws, st, target::body_vars, "reqbody_error", err);
  emit_field(ws, st, target::body_vars, "reqbody_processor_error", err);
  // ARGS_COMBINED_SIZE with the body's arguments (the head's, query alone, was set in on_head).
  emit_field(ws, st, target::body_vars, "args_combined_size", decimal(args_size_).view());
  const auto* m = std::get_if<multipart_parser>(parser_.get());
  if (!m) return;
  mp_flags_ = m->flags();
  const bool strict = m->strict_error();
  if (strict && !body_block_) {  // (a block while feeding counted it already)
    st.multipart_strict.add();
    // modsecurity.conf-recommended's rule 200003 denies these (400): a body that a stricter or
    // laxer backend could split into other parts than the WAF saw (a bare LF before a delimiter,
    // data around the parts, broken quoting). Under inspect_raw they stay variables for rules.
    if (pol_->pol().on_body_error == body_error_action::block) body_block_ = true;
  }
  emit_field(ws, st, target::body_vars, "multipart_strict_error", strict ? "1" : "0");
  for (size_t f = 0; f < multipart_flag_count; ++f)
    emit_field(ws, st, target::body_vars, to_string(static_cast<multipart_flag>(f)),
               (mp_flags_ >> f) & 1 ? "1" : "0");
  emit_field(ws, st, target::body_vars, "files_combined_size",
             decimal(m->files_combined_size()).view());
}

void inspector::scan_target(worker_scratch& ws, worker_stats& st, target where) {
  {
    switch (where) {
      case target::request_line:
        emit_field(ws, st, where, {}, head_.request_line);
        break;
      case target::method:
        emit_field(ws, st, where, {}, head_.method);
        break;
      case target::protocol:
        emit_field(ws, st, where, {}, head_.protocol);
        break;
      case target::uri:
        emit_field(ws, st, where, {}, head_.target);
        break;
      case target::uri_path:
        emit_field(ws, st, where, {}, head_.path);
        break;
      case target::uri_decoded:
      case target::path_decoded: {  // ModSecurity's REQUEST_URI / REQUEST_FILENAME: %XX-decoded
                                    // once
        std::string_view raw = where == target::uri_decoded ? head_.target : head_.path;
        size_t n = std::min(raw.size(), worker_scratch::buffer_bytes);
        copy_bytes(ws.buf_b(), raw.substr(0, n));
        emit_field(ws, st, where, {}, std::string_view(ws.buf_b(), uri_decode(ws.buf_b(), n)));
        break;
      }
      case target::query_string:
        emit_field(ws, st, where, {}, head_.query);
        break;
      case target::args:
      case target::arg_names: {
        // Arguments are URL-decoded once before the rule's own transformations (as ModSecurity).
        for_each_pair(head_.query, [&](std::string_view n, std::string_view v) {
          scan_pair(ws, st, where, n, v);
        });
        break;
      }
      case target::header:
        for (const auto& h : head_.headers) emit_field(ws, st, where, h.name, h.value);
        break;
      case target::header_names:
        for (const auto& h : head_.headers) emit_field(ws, st, where, h.name, h.name);
        break;
      case target::cookies:
      case target::cookie_names:
        for (const auto& h : head_.headers) {
          if (!iequals(h.name, "cookie")) continue;
          std::string_view c = h.value;
          while (!c.empty()) {
            size_t semi = c.find(';');
            std::string_view kv = c.substr(0, semi);
            c = semi == std::string_view::npos ? std::string_view{} : c.substr(semi + 1);
            while (!kv.empty() && kv.front() == ' ') kv.remove_prefix(1);
            if (kv.empty()) continue;
            size_t eq = kv.find('=');
            std::string_view n = kv.substr(0, eq);
            std::string_view v =
                eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1);
            emit_field(ws, st, where, n, where == target::cookies ? v : n);
          }
        }
        break;
      case target::body:
      case target::raw_payload:
      case target::files:
      case target::files_names:
      case target::files_sizes:
      case target::multipart_part_headers:
      case target::body_vars:
        break;  // from the body processors, as the body arrives
    }
  }
}

void inspector::scan_stream(worker_scratch& ws, worker_stats& st, const char* p, size_t n,
                            bool final) {
  constexpr size_t slice = worker_scratch::buffer_bytes - max_stream_transforms * max_stream_carry;
  for (auto& s : streams_) {
    const scan_group& g = rs_->groups()[s.group];
    if (!s.used && n == 0) continue;
    s.used = true;
    for (auto& e : g.negated) set_bit(cond_seen_, rs_->entries()[e].condition);
    size_t off = 0;
    do {
      size_t take = std::min(slice, n - off);
      bool last = off + take == n;
      size_t len =
          stream_transform(g.transforms, s.tstate, p + off, take, ws.buf_a(), final && last);
      scan_ctx x{this, &ws, &st, &g, g.where, {}, ws.buf_a(), len, s.offset};
      x.ids = g.db_entries;
      if (len && hs_scan_stream(s.stream.get(), ws.buf_a(), static_cast<unsigned>(len), 0, ws.hs(),
                                on_match, &x) != HS_SUCCESS)
        engine_failed(st);
      s.offset += len;
      st.bytes_scanned.add(len);
      off += take;
      if (final && last) {
        // End of data: anchored-at-end patterns report now; the stream is ready for the next
        // request.
        if (hs_reset_stream(s.stream.get(), 0, ws.hs(), on_match, &x) != HS_SUCCESS)
          engine_failed(st);
        s.used = false;
        s.offset = 0;
        s.tstate.reset();
      }
    } while (off < n);
  }
}

void inspector::engine_failed(worker_stats& st) {
  st.scan_errors.add();
  engine_error_ = true;
}

bool inspector::holds(uint32_t ri, bool head_done, bool body_done) const {
  const rule& r = rs_->rules()[ri];
  const uint32_t c0 = rs_->first_condition(ri);
  uint64_t chain_fields = 0;
  for (size_t ci = 0; ci < r.conditions.size(); ++ci) {
    const condition& c = r.conditions[ci];
    bool ok;
    if (c.on_matched || c.derived()) {  // MATCHED_VAR(S), capture: on a field where the
      const auto& prev = rs_->conditions()[c0 + ci - 1];  // chain so far held
      if (!prev.cond->on_matched && !prev.cond->derived())
        chain_fields = field_sets_[prev.field_slot];
      chain_fields &= field_sets_[rs_->conditions()[c0 + ci].field_slot];
      ok = chain_fields != 0;
    } else if (!c.negate) {
      ok = bit(cond_matched_, c0 + ci);
    } else {
      bool done = true;
      for (const auto& s : c.selectors)
        done = done && (is_stream_target(s.where) ? body_done : head_done);
      ok = done && bit(cond_seen_, c0 + ci) && !bit(cond_matched_, c0 + ci);
    }
    if (!ok) return false;
  }
  return true;
}

bool inspector::skipped(uint32_t ri) const {
  for (uint32_t g : rs_->skipped_by(ri))
    if (bit(gates_fired_, g)) return true;
  return false;
}

bool inspector::evaluate(worker_stats& st, bool head_done, bool body_done) {
  (void)st;
  const auto& rules = rs_->rules();
  const policy& p = pol_->pol();
  if (engine_error_) {
    // Hyperscan did not finish a scan (scratch too small or in use, a corrupt stream): what it
    // would have matched is unknown. Fail closed, as a detection in detect-only mode.
    any_fired_ = true;
    if (!p.detect_only) decided_block_ = true;
  }
  if (!gates_decided_) {
    // Gates read the head alone, parsed by now: decided once, in rule order (a gate may skip a
    // later gate), before any rule they skip may fire.
    gates_decided_ = true;
    const auto gates = rs_->gates();
    for (size_t g = 0; g < gates.size(); ++g)
      if (bit(rule_candidate_, gates[g]) && !skipped(gates[g]) &&
          holds(gates[g], head_done, body_done))
        set_bit(gates_fired_, g);
  }
  for (size_t k = 0; k < candidates_.size(); ++k) {
    uint32_t ri = candidates_[k];
    if (bit(rule_fired_, ri)) continue;
    const rule& r = rules[ri];
    if (r.silent || skipped(ri) || !holds(ri, head_done, body_done)) continue;
    uint32_t c0 = rs_->first_condition(ri);
    set_bit(rule_fired_, ri);
    any_fired_ = true;
    if (r.act != action::log) score_ += r.score;
    bool blocking =
        r.act == action::block || (r.act == action::score && score_ >= p.anomaly_threshold);
    if (n_matches_ < max_matches) {
      audit_match& m = matches_[n_matches_++];
      m = audit_match{};
      m.rule_id = r.id;
      m.score = static_cast<int16_t>(r.act == action::log ? 0 : r.score);
      m.severity = static_cast<uint8_t>(r.severity);
      m.blocking = blocking && !p.detect_only;
      m.where = r.conditions[0].selectors[0].where;
      // Name the field and excerpt of the last match of one of the rule's conditions.
      for (size_t h = n_hits_; h > 0 && h + hit_ring > n_hits_; --h) {
        const hit& x = hits_[(h - 1) % hit_ring];
        if (x.condition < c0 || x.condition >= c0 + r.conditions.size()) continue;
        m.where = x.where;
        m.confirm_error = x.confirm_error;
        std::memcpy(m.field, x.field, x.field_len);
        m.field_len = x.field_len;
        std::memcpy(m.excerpt, x.excerpt, x.excerpt_len);
        m.excerpt_len = x.excerpt_len;
        break;
      }
    } else {
      ++matches_dropped_;
    }
    if (blocking && !p.detect_only) decided_block_ = true;
  }
  return decided_block_;
}

// An exclusion applies when the path lies under its prefix however the backend reads it: with `;`
// parameters stripped (Tomcat, Spring) or kept, with repeated slashes merged or kept. A path
// normalize_path refuses (encoded '/', bad escapes) gets no path exclusion: every rule runs.
void inspector::mark_path_exclusions(worker_scratch& ws) {
  const auto& ex = pol_->exclusions();
  if (ex.empty()) return;
  for (size_t i = 0; i < ex.size(); ++i) path_excl_[i] = 1;
  std::span<char> out(ws.buf_b(), worker_scratch::buffer_bytes);
  for (auto params : {path_params::strip, path_params::keep})
    for (bool merge : {true, false}) {
      auto n = normalize_path(head_.path, params, merge, out);
      std::string_view norm = n ? std::string_view(out.data(), *n) : std::string_view{};
      for (size_t i = 0; i < ex.size(); ++i)
        if (!ex[i].path_prefix.empty() && (!n || !path_under(norm, ex[i].path_prefix)))
          path_excl_[i] = 0;
    }
}

verdict inspector::on_head(worker_scratch& ws, worker_stats& st, size_t consumed) {
  const policy& p = pol_->pol();
  perr_ = parse_request_head(std::string_view(head_buf_.get(), head_end_), p.limits,
                             std::span<http_header>(header_slots_.get(), p.limits.max_header_count),
                             head_);
  st.requests.add();
  if (perr_ != http_error::none) return block(st, 400, consumed);
  mark_path_exclusions(ws);
  scan_head(ws, st);
  // ARGS_COMBINED_SIZE (names and values of the arguments, decoded, files excluded): the query's
  // now, the total again once a body processor made the body's (body_vars).
  // Only for rule sets that read body_vars: the query is decoded again here.
  if (rs_->block_targets() & (1u << static_cast<unsigned>(target::body_vars))) {
    for_each_pair(head_.query, [&](std::string_view n, std::string_view v) {
      for (std::string_view x : {n, v}) {
        const size_t k = std::min(x.size(), worker_scratch::buffer_bytes);  // a head is smaller
        copy_bytes(ws.buf_b(), x.substr(0, k));
        args_size_ += apply_transform(transform::url_decode, ws.buf_b(), k, k, nullptr);
      }
    });
    emit_field(ws, st, target::body_vars, "args_combined_size", decimal(args_size_).view());
  }
  for (uint32_t ci : rs_->count_conditions()) {  // &VAR conditions: from the parsed head
    const compiled_condition& cc = rs_->conditions()[ci];
    if (!pol_->enabled(cc.rule)) continue;
    set_bit(cond_seen_, ci);
    if (eval_count_condition(cc, head_)) set_bit(cond_matched_, ci);
    if (!bit(rule_candidate_, cc.rule)) {
      set_bit(rule_candidate_, cc.rule);
      candidates_.push_back(cc.rule);
    }
  }
  for (uint32_t ri : pol_->negated_primary())
    if (!bit(rule_candidate_, ri)) {
      set_bit(rule_candidate_, ri);
      candidates_.push_back(ri);
    }
  if (evaluate(st, true, false)) {
    verdict b = block(st, 403, consumed);
    b.head_complete = true;  // head() is this request's (the access log names it)
    return b;
  }
  verdict v;
  v.kind = any_fired_ && p.detect_only ? verdict_kind::detect : verdict_kind::pass;
  v.consumed = consumed;
  v.forward = head_bytes();
  v.head_complete = true;
  if (head_.chunked || head_.content_length > 0) body_start(st);
  upgrade_asked_ = asks_websocket(head_);
  if (body_block_) {
    verdict b = block(st, 400, consumed);
    b.head_complete = true;
    return b;
  }
  if (head_.chunked) {
    stage_ = stage::body_chunked;
    return v;
  }
  if (head_.content_length > 0) {
    stage_ = stage::body_length;
    body_remaining_ = head_.content_length;
    return v;
  }
  return end_request(ws, st, v);
}

void inspector::inspect_body(worker_scratch& ws, worker_stats& st, const char* p, size_t n) {
  const policy& pol = pol_->pol();
  uint64_t before = body_seen_;
  body_seen_ += n;
  if (body_partial_ || limit_hit_) return;
  if (body_seen_ > pol.body_limit) {
    size_t within = before < pol.body_limit ? static_cast<size_t>(pol.body_limit - before) : 0;
    body_parse(ws, st, p, within);
    if (raw_stream_) scan_stream(ws, st, p, within, false);
    if (pol.on_body_limit == body_limit_action::reject) {
      limit_hit_ = true;
    } else {
      // The field still open at the limit is inspected as far as it went, like every field
      // before it (else a value that starts within the limit and runs past it is never seen).
      if (body_parsing_) flush_open_field(ws, st);
      body_partial_ = true;
      st.body_partial.add();
    }
    body_parsing_ = false;  // the rest is not seen: no end-of-body checks
    return;
  }
  // The parser first: an error in these bytes under inspect_raw sends them to the stream scan too.
  body_parse(ws, st, p, n);
  if (raw_stream_) scan_stream(ws, st, p, n, false);
}

verdict inspector::on_body(worker_scratch& ws, worker_stats& st, std::span<const char> data) {
  verdict v;
  bool done = false;
  if (stage_ == stage::body_length) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(body_remaining_, data.size()));
    inspect_body(ws, st, data.data(), take);
    body_remaining_ -= take;
    v.consumed = take;
    done = body_remaining_ == 0;
  } else {
    auto r = chunked_.feed(data.data(), data.size(),
                           [&](const char* p, size_t n) { inspect_body(ws, st, p, n); });
    v.consumed = r.consumed;
    if (r.st == chunked_decoder::status::error) {
      perr_ = r.err;
      return block(st, 400, r.consumed);
    }
    done = r.st == chunked_decoder::status::done;
  }
  if (limit_hit_) return block(st, 413, v.consumed);
  if (body_block_) return block(st, 400, v.consumed);
  if (evaluate(st, true, false)) return block(st, 403, v.consumed);
  v.kind = any_fired_ && pol_->pol().detect_only ? verdict_kind::detect : verdict_kind::pass;
  v.forward = data.first(v.consumed);
  if (done) return end_request(ws, st, v);
  return v;
}

verdict inspector::end_request(worker_scratch& ws, worker_stats& st, verdict v) {
  if (body_seen_ > 0 && !body_partial_) scan_stream(ws, st, nullptr, 0, true);
  body_finish(ws, st);
  if (limit_hit_) return block(st, 413, v.consumed);
  if (body_block_) return block(st, 400, v.consumed);
  if (evaluate(st, true, true)) return block(st, 403, v.consumed);
  v.kind = any_fired_ ? verdict_kind::detect : verdict_kind::pass;
  (v.kind == verdict_kind::detect ? st.detected : st.passed).add();
  v.request_complete = true;
  pending_reset_ = true;
  if (upgrade_asked_) tunnel_ = tunnel::wait;
  return v;
}

void inspector::upgrade_response(worker_stats& st, unsigned status) {
  if (tunnel_ != tunnel::wait) return;
  if (status == 101) {
    tunnel_ = tunnel::open;
    ws_ = {};
    st.upgrades.add();
  } else {
    tunnel_ = tunnel::none;
    st.upgrades_refused.add();
  }
}

// The tunnel's bytes: passed on, or (inspect_raw) the payloads of the client's WebSocket frames,
// unmasked, scanned as one body stream by the body rules (a masked payload is the client's bytes
// XORed with a key of its choice: scanned as sent, no rule could ever match it).
verdict inspector::tunnel_feed(worker_scratch& ws, worker_stats& st, std::span<const char> data) {
  verdict v;
  v.consumed = data.size();
  v.forward = data;
  v.kind = verdict_kind::pass;
  if (pol_->pol().on_upgrade == upgrade_action::inspect_raw) {
    if (pending_reset_) reset_request();
    if (!ws_scan(ws, st, data.data(), data.size())) {
      st.ws_refused.add();
      return block(st, 400, data.size());
    }
    if (evaluate(st, true, false)) return block(st, 403, data.size());
    if (any_fired_) v.kind = verdict_kind::detect;
  }
  return v;
}

// RFC 6455 §5.2: FIN/RSV/opcode, MASK and a 7-bit length (126: 16 bits follow, 127: 64 bits),
// then the 4-byte masking key. Every length the peer sends is held in 64 bits and only ever
// compared with what is in hand, so no length can overflow a buffer or a narrowing cast.
bool inspector::ws_scan(worker_scratch& ws, worker_stats& st, const char* p, size_t n) {
  const auto* in = reinterpret_cast<const uint8_t*>(p);
  size_t i = 0;
  while (i < n) {
    if (ws_.payload == 0) {  // a frame header
      ws_.hdr[ws_.hdr_len++] = in[i++];
      if (ws_.hdr_len < 2) continue;
      const uint8_t len7 = ws_.hdr[1] & 0x7f;
      const size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
      if ((ws_.hdr[1] & 0x80) == 0 || (ws_.hdr[0] & 0x40) != 0) return false;  // unmasked; RSV1
      if (ws_.hdr_len < need) continue;
      uint64_t len = len7;
      if (len7 == 126) len = uint64_t(ws_.hdr[2]) << 8 | ws_.hdr[3];
      if (len7 == 127) {
        len = 0;
        for (int k = 2; k < 10; ++k) len = len << 8 | ws_.hdr[k];
        if (len >> 63) return false;
      }
      std::memcpy(ws_.mask, ws_.hdr + need - 4, 4);
      ws_.mask_pos = 0;
      ws_.hdr_len = 0;
      ws_.payload = len;
      st.ws_frames.add();
      continue;
    }
    char buf[1024];
    const size_t take =
        static_cast<size_t>(std::min<uint64_t>(std::min<uint64_t>(ws_.payload, n - i), sizeof buf));
    for (size_t k = 0; k < take; ++k)
      buf[k] = static_cast<char>(in[i + k] ^ ws_.mask[(ws_.mask_pos + k) & 3]);
    ws_.mask_pos = static_cast<uint8_t>((ws_.mask_pos + take) & 3);
    ws_.payload -= take;
    i += take;
    scan_stream(ws, st, buf, take, false);
  }
  return true;
}

verdict inspector::feed(worker_scratch& ws, worker_stats& st, std::span<const char> data) {
  if (stage_ == stage::blocked) return block_again();
  if (tunnel_ == tunnel::wait) return verdict{};  // held until the upstream answered the upgrade
  if (tunnel_ == tunnel::open) return tunnel_feed(ws, st, data);
  if (pending_reset_) reset_request();
  if (mode_ == mode::raw) {
    scan_stream(ws, st, data.data(), data.size(), false);
    if (evaluate(st, true, false)) return block(st, 403, data.size());
    verdict v;
    v.kind = any_fired_ ? verdict_kind::detect : verdict_kind::pass;
    v.consumed = data.size();
    v.forward = data;
    return v;
  }
  if (stage_ != stage::head) return on_body(ws, st, data);
  const auto& lim = pol_->pol().limits;
  size_t old = head_len_;
  size_t take = std::min<size_t>(lim.max_head_bytes - head_len_, data.size());
  std::memcpy(head_buf_.get() + head_len_, data.data(), take);
  head_len_ += take;
  size_t end = 0;
  http_error e = find_head_end(head_buf_.get(), head_len_, lim, head_scan_, end);
  if (end == 0 && e != http_error::none) {
    perr_ = e;
    st.requests.add();
    return block(st, 400, take);
  }
  if (end == 0) {
    verdict v;
    v.consumed = take;
    return v;
  }
  head_end_ = end;
  return on_head(ws, st, end - old);
}

verdict inspector::block_again() const {
  verdict v;
  v.kind = verdict_kind::block;
  v.status = status_;
  return v;
}

verdict inspector::finish(worker_scratch& ws, worker_stats& st) {
  if (stage_ == stage::blocked) return block_again();
  if (tunnel_ != tunnel::none) {
    verdict v;
    v.kind = verdict_kind::pass;  // the client closed its side of the tunnel (or before the answer)
    if (tunnel_ == tunnel::open && pol_->pol().on_upgrade == upgrade_action::inspect_raw) {
      scan_stream(ws, st, nullptr, 0, true);
      if (evaluate(st, true, true)) return block(st, 403, 0);
      if (any_fired_) v.kind = verdict_kind::detect;
    }
    return v;
  }
  if (pending_reset_) reset_request();
  verdict v;
  if (mode_ == mode::raw) {
    scan_stream(ws, st, nullptr, 0, true);
    if (evaluate(st, true, true)) return block(st, 403, 0);
    v.kind = any_fired_ ? verdict_kind::detect : verdict_kind::pass;
    v.request_complete = true;
    return v;
  }
  if (stage_ == stage::head && head_len_ == 0) {
    v.kind = verdict_kind::pass;  // clean close between requests
    return v;
  }
  if (stage_ == stage::head) st.requests.add();
  perr_ = http_error::truncated;
  return block(st, 400, 0);
}

size_t format_block_response(uint16_t status, std::string_view request_id, std::span<char> out) {
  const char* reason = status == 400   ? "Bad Request"
                       : status == 413 ? "Content Too Large"
                                       : "Forbidden";
  char body[160];
  int bl =
      std::snprintf(body, sizeof body, "%u %s: request %.*s\n", status, reason,
                    static_cast<int>(std::min<size_t>(request_id.size(), 64)), request_id.data());
  if (bl < 0) return 0;
  int n =
      std::snprintf(out.data(), out.size(),
                    "HTTP/1.1 %u %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                    "X-Request-Id: %.*s\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n%s",
                    status, reason, bl, static_cast<int>(std::min<size_t>(request_id.size(), 64)),
                    request_id.data(), body);
  if (n < 0 || static_cast<size_t>(n) >= out.size()) return 0;
  return static_cast<size_t>(n);
}

}  // namespace waf
