#include "modsec_harness.h"

#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ModSecurity* ms;

/* Rule matches are logged through this callback; the bench discards them (a real connector would
 * queue them), so ModSecurity is not timed writing to stderr. */
static unsigned* g_ids;
static size_t g_cap, g_n;
static void discard_log(void* data, const void* msg) {
  (void)data;
  if (!g_ids || !msg) return;
  /* The text form of a rule message: ... [id "942100"] ... */
  const char* p = strstr((const char*)msg, "[id \"");
  if (!p) return;
  unsigned id = (unsigned)strtoul(p + 5, NULL, 10);
  for (size_t i = 0; i < g_n && i < g_cap; ++i)
    if (g_ids[i] == id) return;
  if (g_n < g_cap) g_ids[g_n] = id;
  ++g_n;
}
static RulesSet* rules;

int msh_load(const char* base_rules, const char* const* files, size_t n_files, char* err, size_t err_len) {
  const char* e = NULL;
  ms = msc_init();
  msc_set_connector_info(ms, "edge-waf-bench");
  msc_set_log_cb(ms, discard_log);
  rules = msc_create_rules_set();
  if (msc_rules_add(rules, base_rules, &e) < 0) {
    snprintf(err, err_len, "base rules: %s", e ? e : "?");
    return -1;
  }
  for (size_t i = 0; i < n_files; ++i) {
    if (msc_rules_add_file(rules, files[i], &e) < 0) {
      snprintf(err, err_len, "%s: %s", files[i], e ? e : "?");
      return -1;
    }
  }
  return 0;
}

static int intervened(Transaction* t) {
  ModSecurityIntervention it;
  memset(&it, 0, sizeof it);
  it.status = 200;
  int hit = msc_intervention(t, &it) && it.disruptive && it.status >= 400;
  free(it.url);
  free(it.log);
  return hit;
}

int msh_eval(const char* method, const char* uri, const char* version, const msh_header* headers, size_t n_headers,
             const char* body, size_t body_len) {
  Transaction* t = msc_new_transaction(ms, rules, NULL);
  msc_process_connection(t, "192.0.2.10", 40000, "198.51.100.1", 443);
  msc_process_uri(t, uri, method, version);
  for (size_t i = 0; i < n_headers; ++i)
    msc_add_n_request_header(t, (const unsigned char*)headers[i].name, headers[i].name_len,
                             (const unsigned char*)headers[i].value, headers[i].value_len);
  msc_process_request_headers(t);
  int blocked = intervened(t);
  if (!blocked) {
    if (body_len) msc_append_request_body(t, (const unsigned char*)body, body_len);
    msc_process_request_body(t);
    blocked = intervened(t);
  }
  msc_process_logging(t);
  msc_transaction_cleanup(t);
  return blocked;
}

int msh_eval_ids(const char* method, const char* uri, const char* version,
                 const msh_header* headers, size_t n_headers, const char* body, size_t body_len,
                 unsigned* ids, size_t cap, size_t* n_ids) {
  g_ids = ids;
  g_cap = cap;
  g_n = 0;
  int r = msh_eval(method, uri, version, headers, n_headers, body, body_len);
  *n_ids = g_n;
  g_ids = NULL;
  g_cap = g_n = 0;
  return r;
}

void msh_unload(void) {
  if (rules) msc_rules_cleanup(rules);
  if (ms) msc_cleanup(ms);
  rules = NULL;
  ms = NULL;
}
