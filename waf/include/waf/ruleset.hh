#pragma once
// The compiled, immutable rule set: one Hyperscan database per (target, transformation pipeline),
// block mode for head targets and stream mode for body/raw payload, PCRE2 confirm for patterns
// Hyperscan only accepts in prefilter mode. Built on the control thread (or a background thread),
// shared with workers through shared_ptr; a worker needs one worker_scratch.
#include <hs/hs.h>

#include <array>
#include <cstdint>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hh"
#include "waf/rule.hh"

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;
struct pcre2_real_match_context_8;
struct pcre2_real_jit_stack_8;

namespace waf {

struct hs_database_deleter {
  void operator()(hs_database_t* d) const { hs_free_database(d); }
};
struct hs_scratch_deleter {
  void operator()(hs_scratch_t* s) const { hs_free_scratch(s); }
};
struct hs_stream_deleter {
  void operator()(hs_stream_t* s) const { hs_close_stream(s, nullptr, nullptr, nullptr); }
};
struct pcre2_code_deleter {
  void operator()(pcre2_real_code_8* c) const;
};
struct pcre2_match_data_deleter {
  void operator()(pcre2_real_match_data_8* m) const;
};
struct pcre2_match_context_deleter {
  void operator()(pcre2_real_match_context_8* m) const;
};
struct pcre2_jit_stack_deleter {
  void operator()(pcre2_real_jit_stack_8* s) const;
};
// Shared: a compiled database is immutable, and a reload reuses the databases whose expressions
// did not change (see ruleset::compile).
using hs_database_ptr = std::shared_ptr<hs_database_t>;
using hs_scratch_ptr = std::unique_ptr<hs_scratch_t, hs_scratch_deleter>;
using hs_stream_ptr = std::unique_ptr<hs_stream_t, hs_stream_deleter>;
using pcre2_code_ptr = std::unique_ptr<pcre2_real_code_8, pcre2_code_deleter>;
using pcre2_match_data_ptr = std::unique_ptr<pcre2_real_match_data_8, pcre2_match_data_deleter>;
using pcre2_match_context_ptr =
    std::unique_ptr<pcre2_real_match_context_8, pcre2_match_context_deleter>;
using pcre2_jit_stack_ptr = std::unique_ptr<pcre2_real_jit_stack_8, pcre2_jit_stack_deleter>;

// Bounds on one PCRE2 confirm (a prefiltered pattern run over one field). A confirm that reaches
// one of them fails closed: it counts as a match of its rule (worker_stats::confirm_errors). The
// match limit bounds the CPU one field may cost (PCRE2's default, 10 million, is ~a second of
// backtracking); the depth limit bounds the interpreter's backtracking memory; the JIT stack is
// allocated once per worker, so its size is explicit instead of PCRE2's 32 KiB on-demand default.
struct pcre_limits {
  static constexpr uint32_t match = 1'000'000;
  static constexpr uint32_t depth = 10'000;
  static constexpr size_t jit_stack_start = 32 * 1024;
  static constexpr size_t jit_stack_max = 1024 * 1024;
};

// Where a Hyperscan match id leads: a condition of a rule, in one scan group.
struct entry {
  uint32_t rule = 0;       // index into ruleset::rules()
  uint32_t condition = 0;  // global condition index (ruleset::conditions())
  bool prefilter = false;  // Hyperscan match must be confirmed by pcre2 (block targets only)
  // A regex Hyperscan rejects even in prefilter mode: a direct entry that PCRE2 alone evaluates
  // on each field of its group (block targets only), with the confirm's limits.
  bool pcre_only = false;
  // A multi_match condition on a block target: it also holds on the untransformed value and after
  // each transformation that changed it (code operators: inspector::eval_steps; Hyperscan ones:
  // scan_group::multi_steps).
  bool multi_steps = false;
  uint32_t group = 0;  // index into ruleset::groups()
};

// Block-mode groups are keyed by the transformation pipeline alone and scanned over every field of
// every target in `targets` (the match callback checks the condition's selectors), so a CRS regex
// used on ARGS|ARGS_NAMES|REQUEST_COOKIES is compiled once, not once per variable. Stream groups
// are keyed by (target, pipeline) since each needs its own stream.
struct scan_group {
  target where = target::args;  // stream groups: the target; block groups: unused
  bool stream = false;
  uint32_t targets = 0;  // bit per target scanned with this group
  uint32_t unnamed = 0;  // bit per target with a selector for every field of it
  std::vector<std::pair<target, std::string>> names;  // else only these fields are scanned
  std::vector<transform> transforms;
  // Hyperscan entries: a stream group's are in `db`, a block group's in ruleset::block_dbs().
  bool hs = false;
  // A stream group's database; a block group's multi_steps entries alone (scan_steps).
  hs_database_ptr db;
  // Hyperscan ids in `db` are local to it: the entry index of id i is db_entries[i].
  std::vector<uint32_t> db_entries;
  std::vector<uint32_t> direct;   // entries evaluated in code (is_code_op): eval_code_op
  std::vector<uint32_t> negated;  // entries of negated conditions: a scanned field marks them seen
  size_t stream_state_bytes = 0;  // hs_stream_size for stream groups
  // Block groups with multi_steps Hyperscan entries: each field's intermediate values (before the
  // transformations and after each) that changed are scanned too, for those entries only.
  bool multi_steps = false;
};

struct compiled_condition {
  const condition* cond = nullptr;
  uint32_t rule = 0;
  pcre2_code_ptr confirm;  // set when the rx pattern is compiled in prefilter mode
  int64_t number = 0;      // numeric operators: the operand
  // MATCHED_VAR chains: slot in the per-request field sets (ruleset::field_slots()) of a condition
  // that is followed by an on_matched or derived condition or is one; -1 otherwise.
  int32_t field_slot = -1;
  // Capture (condition::derive): on the condition whose groups the next one uses, its regex
  // compiled by PCRE2 for the groups and the next condition's index; on a derived rx condition,
  // `confirm` is its own PCRE2 program.
  pcre2_code_ptr capture;
  int32_t derived_next = -1;
};

struct request_head;
// A count condition (condition::count): the number of fields of the request head its selectors
// accept, compared with its numeric operator (not negated here). Allocation-free.
bool eval_count_condition(const compiled_condition& cc, const request_head& h);

// Evaluates a code operator (is_code_op) over one transformed field value. Allocation-free.
bool eval_code_op(const compiled_condition& cc, std::string_view value);
class worker_scratch;
// A derived condition's operator (condition::derive) over its built, transformed value, against
// `operand` (its static argument, or the one built at request time); not negated here. rx runs
// the condition's PCRE2 program; where PCRE2 cannot decide (a limit), *error is set and the answer
// is true (fail closed). Allocation-free.
bool eval_derived_op(const compiled_condition& cc, std::string_view value, std::string_view operand,
                     const worker_scratch& ws, bool* error);
// The field identity used by MATCHED_VAR chains: one bit of 64 for (target, name). Two different
// fields share a bit with probability 1/64; a chain then may hold across them (documented).
uint64_t field_bit(target where, std::string_view name);

struct compile_options {
  // Empty: no cache. Else databases are (de)serialised under it, one file per rule-set content
  // hash, bound to that hash, the Hyperscan version and the platform, and checksummed; an entry
  // that does not verify is ignored (compile_stats::cache_rejected) and rewritten.
  std::string cache_dir;
};

struct compile_stats {
  double compile_ms = 0;  // wall time of compile() (cache load included)
  bool from_cache = false;
  std::string
      cache_rejected;  // non-empty: a cache entry was there but not used (path: why); recompiled
  std::string cache_error;  // non-empty: the fresh databases could not be stored (path: why)
  size_t expressions = 0;   // Hyperscan expressions over all groups
  size_t prefiltered = 0;   // of which compiled in prefilter mode + PCRE2 confirm
  size_t groups = 0;
  size_t database_bytes = 0;
  size_t stream_state_bytes = 0;  // hs stream state per flow (sum over stream groups)
};

class ruleset {
 public:
  // Validates (errors name the rule id and its file:line:col) and compiles. May take seconds for
  // large sets: run it off the worker threads.
  static common::result<std::shared_ptr<const ruleset>> compile(std::vector<rule> rules,
                                                                const compile_options& opts = {});

  std::span<const rule> rules() const { return rules_; }
  std::span<const compiled_condition> conditions() const { return conditions_; }
  std::span<const entry> entries() const { return entries_; }
  std::span<const scan_group> groups() const { return groups_; }
  // The block groups' Hyperscan entries whose conditions select `where`, in databases shared
  // by targets with nearly the same entries (ARGS, ARGS_NAMES and the cookies in the CRS). A
  // field is scanned once per distinct value its groups' transformations make of it, and a match
  // counts for the groups that made that value (entry::group): a benign field that most
  // transformations leave alone costs one scan, not one per group. Empty: nothing to scan there.
  // Split in databases of block_chunk_min to block_chunk_max entries, about 30 on average, cut
  // where an entry's hash says (content-defined: a changed rule moves only its own chunk's cuts,
  // so a reload recompiles little): Hyperscan's compile time grows faster than the pattern count,
  // and a field is scanned by a few of them instead of one per group.
  static constexpr size_t block_chunk_min = 8;
  static constexpr size_t block_chunk_max = 64;
  static constexpr size_t block_chunk_cut = 24;  // a cut after 1 entry in this many
  // Indices into block_dbs() of `where`'s databases: first, count.
  std::pair<uint32_t, uint32_t> block_db_range(target where) const {
    return target_dbs_[static_cast<size_t>(where)];
  }
  // The groups whose entries a block database holds (ascending).
  std::span<const uint32_t> block_db_groups(size_t db) const { return block_db_groups_[db]; }
  std::span<const hs_database_ptr> block_dbs() const { return block_dbs_; }
  // Hyperscan ids are local to each database, so that an unchanged database is the same bytes
  // whatever changed around it: the entry index of id i in block_dbs()[db] is
  // block_db_entries(db)[i].
  std::span<const uint32_t> block_db_entries(size_t db) const { return block_db_entries_[db]; }
  // Block groups, ordered by their pipelines so that groups sharing a prefix of transformations
  // are adjacent (inspector::emit_field computes a shared prefix once per field).
  std::span<const uint32_t> block_order() const { return block_order_; }
  // Targets any block group scans (bit per target).
  uint32_t block_targets() const { return block_targets_; }
  uint64_t hash() const { return hash_; }
  const compile_stats& stats() const { return stats_; }
  // Index of a rule id, or -1.
  int find(uint32_t id) const;

  ruleset(const ruleset&) = delete;
  ruleset& operator=(const ruleset&) = delete;
  ruleset() = default;

 private:
  friend struct ruleset_builder;
  std::vector<rule> rules_;
  std::vector<compiled_condition> conditions_;
  std::vector<entry> entries_;
  std::vector<scan_group> groups_;
  std::vector<hs_database_ptr> block_dbs_;
  std::vector<std::vector<uint32_t>> block_db_entries_;
  std::vector<std::vector<uint32_t>> block_db_groups_;
  std::array<std::pair<uint32_t, uint32_t>, target_count> target_dbs_{};  // first, count
  uint32_t block_targets_ = 0;
  std::vector<uint32_t> block_order_;
  std::vector<uint32_t> rule_first_condition_;
  uint64_t hash_ = 0;
  compile_stats stats_;

 public:
  uint32_t first_condition(uint32_t rule_index) const { return rule_first_condition_[rule_index]; }
  // rule::gate: the gates' rule indices in rule order, and per rule the gates (indices into
  // gates()) that skip it.
  std::span<const uint32_t> gates() const { return gates_; }
  std::span<const uint32_t> skipped_by(uint32_t rule_index) const {
    return skipped_by_[rule_index];
  }
  // Number of field sets a request keeps for MATCHED_VAR chains (compiled_condition::field_slot).
  uint32_t field_slots() const { return field_slots_; }
  // Count conditions (condition::count), evaluated once per request head.
  std::span<const uint32_t> count_conditions() const { return count_conditions_; }

 private:
  uint32_t field_slots_ = 0;
  std::vector<uint32_t> count_conditions_;
  std::vector<uint32_t> gates_;
  std::vector<std::vector<uint32_t>> skipped_by_;
};

// Runs ruleset::compile on a thread of its own; the control thread polls or waits on the future
// and publishes the result (e.g. in its RCU snapshot). Workers never wait on it.
std::future<common::result<std::shared_ptr<const ruleset>>> compile_in_background(
    std::vector<rule> rules, compile_options opts = {});

// How Hyperscan takes a regex: as is, only in prefilter mode (needs a PCRE2 confirm, so block
// targets only), or not at all (with the message).
enum class pattern_support : uint8_t { full, prefilter, rejected };
pattern_support check_regex(const std::string& rx, bool caseless, std::string* message = nullptr);
// Whether PCRE2 compiles the regex (what derived conditions and capture steps run); else message.
bool check_pcre2(const std::string& rx, bool caseless, std::string* message = nullptr);

// The canonical hash of a rule list (what the cache is keyed by).
uint64_t hash_rules(std::span<const rule> rules);

// Per-worker matching state: Hyperscan scratch, PCRE2 match data and transformation buffers.
// Create on the control thread for each worker; call prepare() for every ruleset the worker will
// scan with (it only grows, so an older ruleset still held by live connections stays covered).
class worker_scratch {
 public:
  static constexpr size_t buffer_bytes = 128 * 1024;
  static common::result<worker_scratch> create(const ruleset& rs);
  common::result<void> prepare(const ruleset& rs);

  hs_scratch_t* hs() const { return hs_.get(); }
  pcre2_real_match_data_8* match_data() const { return md_.get(); }
  // Match and depth limits and the worker's JIT stack (pcre_limits): pass to every pcre2_match.
  pcre2_real_match_context_8* match_context() const { return mctx_.get(); }
  char* buf_a() const { return a_.get(); }
  char* buf_b() const { return b_.get(); }
  char* buf_c() const { return c_.get(); }
  // Values built by derived conditions (condition::derive): the value in the first half, the
  // operand in the second.
  char* buf_d() const { return d_.get(); }
  // multi_match's intermediate values (inspector::scan_steps, eval_steps): two buffers of
  // buffer_bytes, the value and the one before the last transformation.
  char* buf_e() const { return e_.get(); }
  // One field's distinct transformed values, waiting for their block_dbs() scans
  // (inspector::emit_field): arena_bytes, at least one buffer_bytes free before each transform.
  static constexpr size_t arena_bytes = 4 * buffer_bytes;
  char* arena() const { return arena_.get(); }
  // Per block group of the largest prepared ruleset: the serial of the value the group made of
  // the field being scanned; a block_dbs() match counts for the group when serials agree.
  uint64_t* group_serial() const { return group_serial_.get(); }
  size_t group_slots() const { return group_slots_; }
  uint64_t next_serial() { return ++serial_; }  // 64 bits: never wraps
  // A field's value after the first k+1 transformations of a pipeline (k < levels), kept while
  // the next groups share that prefix.
  static constexpr size_t levels = 6;
  char* level(size_t k) const { return levels_.get() + k * buffer_bytes; }
  static constexpr size_t captures = 10;  // match_data() pairs: ModSecurity's TX:0..TX:9

 private:
  hs_scratch_ptr hs_;
  pcre2_match_data_ptr md_;
  pcre2_jit_stack_ptr jit_stack_;
  pcre2_match_context_ptr mctx_;
  std::unique_ptr<char[]> a_, b_, c_, d_, e_, arena_, levels_;
  std::unique_ptr<uint64_t[]> group_serial_;
  size_t group_slots_ = 0;
  uint64_t serial_ = 0;
};

}  // namespace waf
