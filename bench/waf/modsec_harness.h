/* libmodsecurity3 driven through its C API. Compiled as C: the library's C++ headers do not build
 * under C++23 (they return NULL as std::string). */
#ifndef EDGE_BENCH_MODSEC_HARNESS_H
#define EDGE_BENCH_MODSEC_HARNESS_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct msh_header {
  const char* name;
  size_t name_len;
  const char* value;
  size_t value_len;
} msh_header;

/* Returns 0 on success; on error writes a message into err. */
int msh_load(const char* base_rules, const char* const* files, size_t n_files, char* err,
             size_t err_len);
/* Phases 1 and 2 of one request; returns 1 when ModSecurity intervened with a status >= 400. */
int msh_eval(const char* method, const char* uri, const char* version, const msh_header* headers,
             size_t n_headers, const char* body, size_t body_len);
/* As msh_eval, and lists the ids of the rules that matched and logged (ModSecurity's log callback:
 * chain heads, rules with `log`), up to cap of them in ids; *n_ids is the number seen (may exceed
 * cap). */
int msh_eval_ids(const char* method, const char* uri, const char* version,
                 const msh_header* headers, size_t n_headers, const char* body, size_t body_len,
                 unsigned* ids, size_t cap, size_t* n_ids);
void msh_unload(void);

#ifdef __cplusplus
}
#endif
#endif
