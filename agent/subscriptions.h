/*
 * subscriptions: the agent's own webhook subscriptions in Factorial.
 *
 * Desired: one subscription per configured type, target_url
 * <public_url>/<type>, the challenge from challenge_file, named
 * "factorial-ldap-agent <type>", enabled, with the configured api_version
 * (which decides the shape of the deliveries).  A subscription is the
 * agent's own when it carries that name or points under public_url.
 * Factorial keeps one subscription per type and company (a second create
 * overwrites it or is refused with 422), so sync lists first, updates what
 * is its own (a wrong target_url, challenge or api_version, a disabled one
 * re-enabled), creates what is missing (a 422 "already taken" turns into
 * an update) and deletes its own subscriptions of types no longer
 * configured.  One of a configured type that is another integration's is
 * left alone and said ("foreign"), unless webhooks.take_over_subscriptions
 * says to take it over.  delete removes only the agent's own.  Ids are
 * kept as the text they came as; company_id is sent as the configured
 * version wants it (ids.h).
 *
 * Memory: results are written into the caller's buffer; nothing retained.
 */
#ifndef FLA_SUBSCRIPTIONS_H
#define FLA_SUBSCRIPTIONS_H

#include <stdbool.h>

#include "config.h"
#include "factorial.h"
#include "common/sbuf.h"

struct subscriptions_result {
	unsigned created, updated, deleted, unchanged;
	unsigned reenabled; /* own subscriptions found disabled and enabled again */
	unsigned foreign;   /* of a configured type, another integration's: left alone */
};

int subscriptions_list(struct factorial *f, const struct config *cfg, struct sbuf *out, struct sbuf *err);
int subscriptions_sync(struct factorial *f, const struct config *cfg, bool dry_run, struct sbuf *out,
                       struct subscriptions_result *res, struct sbuf *err);
/* Deletes this agent's own subscriptions (dry_run: says which it would). */
int subscriptions_delete(struct factorial *f, const struct config *cfg, bool dry_run, struct sbuf *out,
                         struct subscriptions_result *res, struct sbuf *err);

#endif
