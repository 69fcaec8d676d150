#pragma once
// Which limits of the rules directory a service can enforce, by kind (rules/README.md, "Limit
// files"; docs/limits.md): checked against the configuration when the directory (or the
// configuration) is loaded, so that a limit a service cannot enforce is refused with its file:line
// instead of being silently ignored.
//
//   kind tcp/tls, with a WAF policy: every scope (requests once the WAF's parser has a head);
//   kind tcp/tls, no WAF policy:     syn, packets, bytes, conn, concurrent and the ACL (nothing
//                                    parses its requests, so a `requests` limit naming it is
//                                    refused);
//   kind l4 (forwarded, no TCP state here): the ACL and syn (TCP only), packets, bytes; a refused
//                                    SYN may be answered with a RST; conn and concurrent need the
//                                    end of a handshake and of a connection, which only the
//                                    terminating kinds see, and requests a parser.
// A limit with no service list applies to every tcp/tls service that can enforce its scope, never
// to an l4 service (an l4 service takes only the limits that name it).
#include "common/result.hh"
#include "edge/config.hh"
#include "limits/spec.hh"

namespace edge {

// Refuses the first limit that names a service of `c` that cannot enforce it (error at the limit's
// file:line:col). Names the configuration lacks are not an error (a later config may add them).
common::result<void> check_limit_targets(const limits::limits_config& lc, const config& c);

// The configuration's kind l4 services: they take only the limits that name them.
void mark_explicit_only(limits::limits_config& lc, const config& c);

}  // namespace edge
